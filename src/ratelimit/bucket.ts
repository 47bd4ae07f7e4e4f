import type { Clock, TimerHandle } from '../time/clock.js';
import type { BucketLimit } from './settings.js';

/**
 * A token bucket for bytes, written here rather than taken from a library: the libraries measured
 * (measured here: limiter, rate-limiter-flexible, bottleneck) either allocate a promise per chunk, throw on a chunk larger than the bucket, or fall
 * back to coarse sleeps, and none of them can pause a socket. What this one does instead:
 *
 * - **Debt instead of refusal.** A chunk has already been read when it is counted, so it always takes
 *   its tokens, even into debt, and is forwarded; the source is then held until the debt is repaid at
 *   the configured rate. The rate therefore holds exactly for any burst, including one smaller than a
 *   read chunk (the original gateway slept a flat second per chunk there), and the gateway keeps at
 *   most the one chunk per tunnel that it was already forwarding.
 * - **One queue, one timer, fair turns.** Held sources wait in FIFO order. Whenever the tokens cover
 *   what was promised so far, the next waiter is released and promised its usual chunk; once its
 *   turn (16 KiB, deficit round robin) is used it goes to the back of the line if others wait.
 *   Tunnels sharing a bucket thus get equal bytes whatever their read sizes, none starves, and one
 *   timer per bucket with waiters replaces a sleep per chunk. A new tunnel joins the same way, so
 *   tunnels opened together share the burst.
 * - **No tokens lost to our own latency.** While sources that have read are waiting, and for
 *   {@link RESUME_GRACE_MS} after one is released (the time it takes to read its next chunk), refill
 *   is not capped at the burst: a timer that fires late, or a resume that takes a moment, would
 *   otherwise silently lower the rate, most of all when the burst is tiny next to the rate.
 *
 * Everything on the per-chunk path is arithmetic on fields: no allocation, no promise, no timer unless
 * the bucket is in debt or others are waiting.
 */
export class TokenBucket {
  private perMs: number;
  private burst: number;
  /** May go negative: debt run up by chunks that were forwarded before they were paid for. */
  private tokens: number;
  private last: number;
  /** Refill is uncapped until then (a waiter was just released and is reading its next chunk). */
  private owedUntil = Number.NEGATIVE_INFINITY;
  /** Tokens set aside for released waiters that have not taken their chunk yet. */
  private promised = 0;
  /** Promises made in an earlier round are void (see onTimer). */
  private round = 0;
  private head: BucketTicket | undefined;
  private tail: BucketTicket | undefined;
  private waiting = 0;
  /** Waiters queued by a chunk they read (not just opened): they are owed every token that accrues. */
  private hungry = 0;
  private timer: TimerHandle | undefined;
  private timerAt = Number.POSITIVE_INFINITY;

  constructor(
    readonly kind: BucketKind,
    limit: BucketLimit,
    private readonly clock: Clock,
  ) {
    this.perMs = limit.bytesPerSecond / 1000;
    this.burst = limit.burstBytes;
    this.tokens = limit.burstBytes;
    this.last = clock.now();
  }

  /** False when the rate is 0 (off): take() then costs one comparison. */
  get limited(): boolean {
    return this.perMs > 0;
  }

  get bytesPerSecond(): number {
    return this.perMs * 1000;
  }

  get burstBytes(): number {
    return this.burst;
  }

  /** Sources currently held by this bucket. */
  get waiters(): number {
    return this.waiting;
  }

  /** Tokens now; negative is debt. For tests and diagnostics. */
  level(): number {
    this.refill(this.clock.now());
    return this.tokens;
  }

  /**
   * A new tunnel direction starts under this bucket. Like a released waiter, it may read at once only
   * while the tokens cover what earlier ones were promised, and is then promised a typical first
   * chunk; otherwise it waits its turn before its first read. So sixteen tunnels opened together share
   * the burst instead of each getting one read (up to 64 KiB) through on top of it, and tunnels opened
   * while an identity is throttled get nothing extra.
   */
  join(ticket: BucketTicket): void {
    if (this.perMs === 0 || ticket.queued) return;
    const now = this.clock.now();
    this.refill(now);
    if (this.waiting === 0 && this.tokens - this.promised >= 0) {
      this.promise(ticket, FIRST_CHUNK_ESTIMATE);
      return;
    }
    this.enqueue(ticket, false);
    ticket.waiter.hold(this);
    this.arm(now);
  }

  /**
   * Counts a chunk that `ticket`'s source has just read (and that is being forwarded). Holds the
   * source if the bucket cannot also pay what it promised to released waiters (it is in debt, or the
   * rest belongs to them), or if others are waiting and its turn is used up.
   */
  take(ticket: BucketTicket, bytes: number, now: number): void {
    if (this.perMs === 0) return;
    this.refill(now);
    this.tokens -= bytes;
    ticket.lastChunk = bytes;
    if (ticket.promise > 0) {
      if (ticket.round === this.round) this.promised -= ticket.promise;
      ticket.promise = 0;
    }
    if (!ticket.queued) {
      const affordable = this.tokens - this.promised >= 0;
      if (affordable && this.waiting === 0 && this.promised === 0) {
        // Nobody competes (none waits, none was just released): no share to keep track of.
        ticket.credit = 0;
      } else {
        // Others wait, or the bucket is in debt: it may go on only while its turn lasts (its credit,
        // see dispatch), into debt if need be (repaid before the next turn). A chunk larger than its
        // credit leaves it negative, which costs it later turns.
        ticket.credit -= bytes;
        if (ticket.credit <= 0) {
          this.enqueue(ticket, true);
          ticket.waiter.hold(this);
        }
      }
    }
    this.dispatch(now);
  }

  /** The ticket's tunnel is gone: drop it from the queue and give back what was set aside for it. */
  leave(ticket: BucketTicket): void {
    const now = this.clock.now();
    this.refill(now);
    if (ticket.queued) this.unlink(ticket);
    if (ticket.promise > 0 && ticket.round === this.round) this.promised -= ticket.promise;
    ticket.promise = 0;
    if (this.perMs > 0) this.dispatch(now);
    else this.disarm();
  }

  /**
   * New limits for a running bucket (config reload). Debt already run up is still owed, at the new
   * rate; a smaller burst applies at once; a bucket switched off releases every waiter, and one
   * switched on starts full.
   */
  reconfigure(limit: BucketLimit): void {
    const now = this.clock.now();
    const wasLimited = this.perMs > 0;
    if (wasLimited) this.refill(now);
    this.perMs = limit.bytesPerSecond / 1000;
    this.burst = limit.burstBytes;
    this.last = now;
    this.disarm();
    if (this.perMs === 0) {
      this.round++;
      this.promised = 0;
      this.tokens = this.burst;
      while (this.head !== undefined) {
        const ticket = this.head;
        this.unlink(ticket);
        ticket.waiter.release(this);
      }
      return;
    }
    this.tokens = wasLimited ? Math.min(this.tokens, this.burst) : this.burst;
    this.dispatch(now);
  }

  /**
   * True when nobody waits and the bucket has refilled to its burst: a new bucket for the same
   * identity would be identical, so forgetting this one gives a reconnecting identity nothing extra.
   */
  isIdleAndFull(): boolean {
    if (this.waiting > 0) return false;
    if (this.perMs === 0) return true;
    this.refill(this.clock.now());
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    const from = this.last;
    const elapsed = now - from;
    if (!(elapsed > 0)) return;
    this.last = now;
    // Only waiters that have read are owed: a tunnel merely opened (joined) and never sending must not
    // let the bucket grow beyond its burst.
    const owed = this.hungry > 0 ? elapsed : Math.min(elapsed, Math.max(0, this.owedUntil - from));
    this.tokens += owed * this.perMs;
    if (owed < elapsed) this.tokens = Math.min(this.burst, this.tokens + (elapsed - owed) * this.perMs);
  }

  /** Releases waiters, oldest first, while the bucket can pay for their usual chunk; then arms the timer. */
  private dispatch(now: number): void {
    // Within a millionth of a byte counts as paid: float rounding must not re-arm a zero-length timer.
    while (this.head !== undefined && this.tokens - this.promised >= -1e-6) {
      const ticket = this.head;
      const wasHungry = ticket.hungry;
      this.unlink(ticket);
      // Deficit round robin: every visit adds a quantum; a waiter whose last chunk was larger than its
      // credit skips turns until the others have had as many bytes. Turns are thus fair in bytes, not
      // only in chunks (a 64 KiB TCP read and a 16 KiB TLS record are not the same share).
      ticket.credit = Math.min(QUANTUM, ticket.credit + QUANTUM);
      if (ticket.credit < 0) {
        this.enqueue(ticket, wasHungry);
        continue;
      }
      this.promise(ticket, ticket.lastChunk > 0 ? ticket.lastChunk : FIRST_CHUNK_ESTIMATE);
      if (wasHungry) this.owedUntil = now + RESUME_GRACE_MS;
      ticket.waiter.release(this);
    }
    this.arm(now);
  }

  private promise(ticket: BucketTicket, bytes: number): void {
    ticket.promise = bytes;
    ticket.round = this.round;
    this.promised += bytes;
  }

  private arm(now: number): void {
    if (this.head === undefined) {
      this.disarm();
      return;
    }
    // Waiters remain, so tokens − promised < 0: wake when refill has covered the difference, or
    // sooner if part of it is promises, which a released tunnel redeems within a moment or never.
    let at = now + (this.promised - this.tokens) / this.perMs;
    if (this.promised > 0) at = Math.min(at, now + PROMISE_TTL_MS);
    // An earlier wake-up is harmless (it re-checks and re-arms), and keeping it saves re-arming a timer
    // on every throttled chunk.
    if (this.timer !== undefined && this.timerAt <= at) return;
    this.disarm();
    this.timerAt = at;
    this.timer = this.clock.setTimer(this.onTimer, at - now);
  }

  private disarm(): void {
    if (this.timer === undefined) return;
    this.clock.clearTimer(this.timer);
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Number.POSITIVE_INFINITY;
    const now = this.clock.now();
    this.refill(now);
    // Whatever was set aside for released waiters has been paid for or has expired by now. A waiter
    // that has not used it has nothing to send (or is held elsewhere); keeping it would stall the queue.
    this.round++;
    this.promised = 0;
    this.dispatch(now);
  };

  private enqueue(ticket: BucketTicket, hungry: boolean): void {
    ticket.queued = true;
    ticket.hungry = hungry;
    if (hungry) this.hungry++;
    ticket.prev = this.tail;
    ticket.next = undefined;
    if (this.tail === undefined) this.head = ticket;
    else this.tail.next = ticket;
    this.tail = ticket;
    this.waiting++;
  }

  private unlink(ticket: BucketTicket): void {
    if (ticket.prev === undefined) this.head = ticket.next;
    else ticket.prev.next = ticket.next;
    if (ticket.next === undefined) this.tail = ticket.prev;
    else ticket.next.prev = ticket.prev;
    ticket.prev = undefined;
    ticket.next = undefined;
    ticket.queued = false;
    if (ticket.hungry) this.hungry--;
    ticket.hungry = false;
    this.waiting--;
  }
}

/**
 * How long after releasing a waiter its next chunk is still owed every token (refill uncapped). A
 * resumed socket reads within one event-loop turn, but a busy or shared machine stalls the loop for
 * milliseconds: with 5 ms a 4 KiB burst at 100 MiB/s lost 2% of the rate, with 15 ms 0.7%
 * (docs/BENCHMARKS.md). Cost: right after a throttled period, when burst_bytes is smaller than
 * rate × 15 ms, up to that much may pass at once; it is time that has already elapsed, so the rate
 * over any longer window is unchanged.
 */
export const RESUME_GRACE_MS = 15;

/** Bytes of turn a waiter earns per visit at the head of the queue (deficit round robin). */
const QUANTUM = 16 * 1024;

/**
 * A promise not redeemed within this time is void at the next wake-up: the released tunnel had nothing
 * to send (an idle direction), and the tokens set aside for it must not keep the others waiting.
 */
const PROMISE_TTL_MS = 100;

/**
 * What a waiter that has not read yet is expected to take: a TLS record or HTTP/2 frame (16 KiB).
 * Only sizes how many waiters one release lets go; the accounting uses the real chunk.
 */
const FIRST_CHUNK_ESTIMATE = 16 * 1024;

/** Which budget a bucket enforces, for logs. */
export type BucketKind = 'identity_upload' | 'identity_download' | 'total_upload';

/** A held source, as a bucket sees it. */
export interface BucketWaiter {
  /** The bucket starts holding the waiter: stop reading its source. */
  hold(bucket: TokenBucket): void;
  /** The bucket lets it go (another bucket may still hold it). */
  release(bucket: TokenBucket): void;
}

/**
 * One waiter's place with one bucket: its queue links and what was set aside for it. Allocated once
 * per tunnel direction and bucket, so throttling allocates nothing per chunk.
 */
export class BucketTicket {
  prev: BucketTicket | undefined;
  next: BucketTicket | undefined;
  queued = false;
  /** Queued because of a chunk it read (rather than on joining). */
  hungry = false;
  /** Its byte share while competing: negative after a chunk larger than its turn (see dispatch). */
  credit = 0;
  /** Tokens set aside when it was released; counted while `round` matches the bucket's. */
  promise = 0;
  round = -1;
  /** Size of its last chunk: what it will most likely take when released. */
  lastChunk = 0;

  constructor(
    readonly bucket: TokenBucket,
    readonly waiter: BucketWaiter,
  ) {}
}
