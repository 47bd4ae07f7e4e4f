import type { BucketLimit, BucketSpec } from '../config/rate-limit.js';
import type { Clock, TimerHandle } from '../time/clock.js';

/**
 * What every byte bucket shares, written here rather than taken from a library: the libraries measured
 * (limiter, rate-limiter-flexible, bottleneck) allocate a promise per chunk, throw on a chunk larger than the bucket or sleep coarsely,
 * and none of them can hold a socket. Subclasses say where tokens come from: local time
 * ({@link TokenBucket}) or leases from the shared store (`leased-bucket.ts`).
 *
 * - **Paid before it is forwarded.** A chunk goes only once the tokens cover it; tokens never go
 *   negative. So over any window W the bucket passes at most `tokens at the start + what accrues in W`,
 *   i.e. `rate × W + burst` for a time-refilled bucket, for any number of tunnels released together
 *   (the debt that many HTTP/2 streams once ran up together, then repaid, made a sawtooth that broke
 *   the bound over short windows). A chunk larger than {@link capacity} is asked for in pieces.
 * - **One queue, fair turns.** Held directions wait in FIFO order, each for the exact piece it holds.
 *   While two or more wait, turns are deficit round robin (a quantum of {@link QUANTUM} bytes per visit),
 *   so tunnels get equal bytes whatever their read sizes and none starves. A direction that was just
 *   served and reads again queues behind the others, so a new tunnel takes its turn like any other.
 * - **One timer (or one lease request) per bucket with waiters**, never one per chunk.
 *
 * The per-chunk path is arithmetic on fields: no allocation, no promise.
 */
export abstract class Bucket {
  /** Never negative: what may be forwarded now. */
  protected tokens = 0;
  private head: BucketTicket | undefined;
  private tail: BucketTicket | undefined;
  private waiting = 0;

  constructor(readonly kind: BucketKind) {}

  /** False when the bucket is off: take() then costs one comparison. */
  abstract get limited(): boolean;
  /** The largest piece one take may ask for; a chunk larger than this is forwarded in pieces. */
  abstract get capacity(): number;
  /** The configured rate and burst, for logs. */
  abstract get bytesPerSecond(): number;
  abstract get burstBytes(): number;
  /** Adds what has accrued since the last call (time-refilled buckets). */
  protected abstract refill(now: number): void;
  /** The head waiter needs `need` and the tokens fall short: arrange for dispatch() to run again. */
  protected abstract awaitTokens(now: number, need: number): void;
  /** Nobody waits any more: drop whatever awaitTokens armed. */
  protected abstract settle(): void;
  /** `bytes` were just taken (leased buckets top up early); nothing for time-refilled ones. */
  protected taken(_now: number): void {}
  /** New limits for a running bucket (config reload); running tunnels follow them. */
  abstract reconfigure(spec: BucketSpec): void;
  /** Nobody waits and forgetting the bucket gives a returning identity nothing it would not have had. */
  abstract isIdleAndFull(): boolean;
  /** The bucket is forgotten (its identity has no tunnels left): hand back what it holds. */
  close(): void {}

  /** Directions currently held by this bucket. */
  get waiters(): number {
    return this.waiting;
  }

  /**
   * Takes `bytes` (at most {@link capacity}) for `ticket`'s direction if nobody waits and the tokens cover
   * them; otherwise queues it and returns false, and the ticket's waiter is granted the piece later.
   * Never grants synchronously after queueing, so the caller is not re-entered.
   */
  take(ticket: BucketTicket, bytes: number, now: number): boolean {
    this.refill(now);
    // Nobody waits, or others wait but this direction's turn is not used up (it was served and read
    // again at once): it goes on while its credit lasts, as deficit round robin lets a flow send its
    // whole quantum.
    if (this.tokens >= bytes && (this.waiting === 0 || ticket.credit >= bytes)) {
      ticket.credit = Math.max(0, ticket.credit - bytes);
      this.tokens -= bytes;
      this.taken(now);
      return true;
    }
    ticket.need = bytes;
    this.enqueue(ticket);
    // A queue that already had a head is waiting for tokens on its behalf (dispatch only ever stops at a
    // head it cannot pay), so only a new head needs asking for.
    if (this.waiting === 1) this.awaitTokens(now, bytes);
    return false;
  }

  /** Tokens taken for a piece that will not be forwarded after all go back. */
  giveBack(bytes: number, now: number): void {
    if (bytes <= 0) return;
    this.refill(now);
    this.restore(bytes);
    this.dispatch(now);
  }

  /** The ticket's tunnel is gone: drop it from the queue. */
  leave(ticket: BucketTicket, now: number): void {
    if (!ticket.queued) return;
    const wasHead = this.head === ticket;
    this.unlink(ticket);
    ticket.need = 0;
    if (wasHead) this.dispatch(now);
  }

  /** Adds returned tokens (a time-refilled bucket caps them at its burst). */
  protected abstract restore(bytes: number): void;

  /**
   * Serves waiters, oldest first, while the tokens cover their piece; then waits for more. Waiters are
   * unlinked before they are granted, so a grant that makes its relay ask for more only queues it again.
   */
  protected dispatch(now: number): void {
    this.refill(now);
    while (this.head !== undefined) {
      const ticket = this.head;
      const need = Math.min(ticket.need, this.capacity);
      if (this.waiting > 1 && ticket.credit < need) {
        // Deficit round robin: a waiter whose turn does not yet cover its piece lets the next one go
        // first and earns a quantum; each visit adds credit, so this ends.
        ticket.credit += QUANTUM;
        this.unlink(ticket);
        this.enqueue(ticket);
        continue;
      }
      if (this.tokens < need) {
        this.awaitTokens(now, need);
        return;
      }
      this.tokens -= need;
      ticket.credit = Math.max(0, ticket.credit - need);
      this.unlink(ticket);
      ticket.need = 0;
      ticket.waiter.granted(this, need);
    }
    this.settle();
    this.taken(now);
  }

  /** Releases every waiter with its piece, paid or not (the bucket was switched off). */
  protected releaseAll(): void {
    while (this.head !== undefined) {
      const ticket = this.head;
      const need = ticket.need;
      this.unlink(ticket);
      ticket.need = 0;
      ticket.waiter.granted(this, need);
    }
    this.settle();
  }

  private enqueue(ticket: BucketTicket): void {
    ticket.queued = true;
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
    this.waiting--;
  }
}

/**
 * An identity's (or the all-identity) bucket refilled by local time: `tokens` grows at the rate up to
 * the burst. The bucket of `[rate_limit] shared = false`.
 */
export class TokenBucket extends Bucket {
  private perMs: number;
  private burst: number;
  private last: number;
  private timer: TimerHandle | undefined;
  private timerAt = Number.POSITIVE_INFINITY;

  constructor(
    kind: BucketKind,
    limit: BucketLimit,
    private readonly clock: Clock,
  ) {
    super(kind);
    this.perMs = limit.bytesPerSecond / 1000;
    this.burst = limit.burstBytes;
    this.tokens = limit.burstBytes;
    this.last = clock.now();
  }

  get limited(): boolean {
    return this.perMs > 0;
  }

  /**
   * Pieces stay a little below the burst: a waiter is woken by a whole-millisecond timer, and what
   * accrues while the timer rounds up must still fit under the cap, or that rate would be lost.
   */
  get capacity(): number {
    return this.burst - Math.min(this.burst / 2, this.perMs * TIMER_SLACK_MS);
  }

  get bytesPerSecond(): number {
    return this.perMs * 1000;
  }

  get burstBytes(): number {
    return this.burst;
  }

  /** Tokens now. For tests and diagnostics. */
  level(): number {
    this.refill(this.clock.now());
    return this.tokens;
  }

  /**
   * New limits for a running bucket (config reload). A smaller burst applies at once; a bucket switched
   * off releases every waiter, and one switched on starts full.
   */
  reconfigure(limit: BucketSpec): void {
    const now = this.clock.now();
    const wasLimited = this.perMs > 0;
    if (wasLimited) this.refill(now);
    this.perMs = limit.bytesPerSecond / 1000;
    this.burst = limit.burstBytes;
    this.last = now;
    this.disarm();
    if (this.perMs === 0) {
      this.tokens = this.burst;
      this.releaseAll();
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
    if (this.waiters > 0) return false;
    if (this.perMs === 0) return true;
    this.refill(this.clock.now());
    return this.tokens >= this.burst;
  }

  protected refill(now: number): void {
    const elapsed = now - this.last;
    if (!(elapsed > 0)) return;
    this.last = now;
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.perMs);
  }

  protected restore(bytes: number): void {
    this.tokens = Math.min(this.burst, this.tokens + bytes);
  }

  protected awaitTokens(now: number, need: number): void {
    // Within a millionth of a byte counts as paid (see onTimer), so float rounding cannot leave a waiter
    // one timer short.
    const at = now + Math.max(0, need - this.tokens) / this.perMs;
    // An earlier wake-up is harmless (it re-checks and re-arms).
    if (this.timer !== undefined && this.timerAt <= at) return;
    this.disarm();
    this.timerAt = at;
    this.timer = this.clock.setTimer(this.onTimer, at - now);
  }

  protected settle(): void {
    this.disarm();
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
    // The timer was armed for exactly the missing tokens; float rounding may leave a hair short.
    this.tokens += ROUNDING_SLACK;
    this.tokens = Math.min(this.tokens, this.burst);
    this.dispatch(now);
  };
}

/**
 * How far a timer may fire after the moment the tokens cover a waiter: Node rounds timers up to whole
 * milliseconds, and a loaded event loop adds a little. A burst below twice this much of the rate cannot
 * keep up with the rate: the bucket never passes more than its burst at once, whatever that costs.
 */
const TIMER_SLACK_MS = 2;

/** Float rounding in elapsed × rate; far below one byte, so it never lets a byte through unpaid. */
const ROUNDING_SLACK = 1e-6;

/**
 * Bytes of turn a waiter earns per visit at the head of the queue (deficit round robin): the largest
 * read a TCP socket hands over, so that one visit covers any whole chunk and a direction with small
 * reads gets as many bytes per turn as one with large reads.
 */
const QUANTUM = 64 * 1024;

/** Which budget a bucket enforces, for logs. */
export type BucketKind = 'identity_upload' | 'identity_download' | 'total_upload';

/** A held direction, as a bucket sees it. */
export interface BucketWaiter {
  /** The bucket took `bytes` (at most what was asked) for the waiter's held piece: it may go. */
  granted(bucket: Bucket, bytes: number): void;
}

/**
 * One waiter's place with one bucket: its queue links, the piece it waits for and its turn. Allocated
 * once per tunnel direction and bucket, so throttling allocates nothing per chunk.
 */
export class BucketTicket {
  prev: BucketTicket | undefined;
  next: BucketTicket | undefined;
  queued = false;
  /** The piece it waits for (0 when not queued). */
  need = 0;
  /** Its byte share while competing (deficit round robin). */
  credit = 0;

  constructor(
    readonly bucket: Bucket,
    readonly waiter: BucketWaiter,
  ) {}
}
