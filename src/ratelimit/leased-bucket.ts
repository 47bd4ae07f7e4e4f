import type { BucketSpec } from '../config/rate-limit.js';
import type { Clock, TimerHandle } from '../time/clock.js';
import { Bucket, type BucketKind } from './bucket.js';
import { leaseSize } from './lease-size.js';

/** What a leased bucket's answer from the shared store looks like (budget/lease-source.ts makes it). */
export interface LeaseAnswer {
  readonly granted: number;
  /** With nothing granted: how long before asking again is worth it (the store's estimate). */
  readonly retryMs: number;
}

/** Where a leased bucket's tokens come from: the shared store, one identity's bucket of it. */
export interface LeaseSource {
  /**
   * Up to `want` bytes, at least `min` (else none). `balance` is what the bucket holds before the grant.
   * Never rejects: a store that does not answer grants nothing.
   */
  lease(want: number, min: number, balance: number): Promise<LeaseAnswer>;
  /** Unused bytes go back to the store; `balance` is what the bucket held before giving them back. */
  giveBack(bytes: number, balance: number): void;
}

/**
 * An identity's (or the all-identity) bucket when budgets are shared: its tokens are what this gateway
 * has leased from the shared bucket in PostgreSQL and not yet spent. It never refills from local time,
 * only from leases, so every byte it passes was granted on the database clock. It holds at most one
 * lease's worth (L, see lease-size.ts) and asks for more when half is spent, before its waiters run dry;
 * what it holds goes back when it has been idle for {@link IDLE_RETURN_MS} or its identity has no tunnels
 * left. While the store does not answer, waiters stay held (fail closed): the bucket spends what it has
 * and then asks again every {@link STORE_RETRY_MS}.
 */
export class LeasedBucket extends Bucket {
  private current: BucketSpec;
  private max: number;
  private inFlight = false;
  /** What the call in flight asked for. */
  private asked = 0;
  private retryTimer: TimerHandle | undefined;
  /** The store said nothing is to be had before then: no call until it has passed. */
  private notBefore = Number.NEGATIVE_INFINITY;
  private idleTimer: TimerHandle | undefined;
  private lastUse = 0;
  private closed = false;

  constructor(
    kind: BucketKind,
    spec: BucketSpec,
    private readonly source: LeaseSource,
    private readonly clock: Clock,
  ) {
    super(kind);
    this.current = spec;
    this.max = leaseSize(spec);
  }

  /** The limits it leases under (its lease source asks the store with these). */
  get spec(): BucketSpec {
    return this.current;
  }

  get limited(): boolean {
    return this.current.bytesPerSecond > 0 || (this.current.quota?.bytes ?? 0) > 0;
  }

  get capacity(): number {
    return this.max;
  }

  get bytesPerSecond(): number {
    return this.current.bytesPerSecond;
  }

  get burstBytes(): number {
    return this.current.burstBytes;
  }

  /** What this gateway holds of the shared bucket. For tests and diagnostics. */
  get balance(): number {
    return this.tokens;
  }

  reconfigure(spec: BucketSpec): void {
    this.current = spec;
    this.max = leaseSize(spec);
    if (!this.limited) {
      this.releaseAll();
      this.returnAll();
      return;
    }
    this.trim();
    this.dispatch(this.clock.now());
  }

  isIdleAndFull(): boolean {
    return this.waiters === 0 && !this.inFlight;
  }

  override close(): void {
    this.closed = true;
    this.cancelTimers();
    this.returnAll();
  }

  protected refill(_now: number): void {}

  protected restore(bytes: number): void {
    this.tokens += bytes;
    this.trim();
  }

  protected awaitTokens(now: number, need: number): void {
    this.request(now, need - this.tokens);
  }

  protected settle(): void {}

  protected override taken(now: number): void {
    this.lastUse = now;
    // Top up before the waiters run dry: the next lease is asked for while half is left.
    if (this.tokens < this.max / 2) this.request(now, 0);
    if (this.tokens > 0) this.armIdle();
  }

  /** Asks the store for a top-up; `urgent` > 0: a waiter needs at least that much more. */
  private request(now: number, urgent: number): void {
    if (this.closed || !this.limited || this.inFlight || this.retryTimer !== undefined) return;
    if (now < this.notBefore) {
      // A waiter must not be left without a wake-up: ask again as soon as the store said it may help.
      if (urgent > 0) this.retryTimer = this.clock.setTimer(this.retry, this.notBefore - now);
      return;
    }
    const want = Math.floor(this.max - this.tokens);
    if (want < 1) return;
    // A waiter needs at least its piece, and takes no less than a quarter lease (a waiter then waits at
    // most 25 ms of the rate for it); a top-up waits for half a lease. Fewer, larger calls: a grant is
    // never a single chunk when many tunnels compete.
    const min =
      urgent > 0
        ? Math.min(want, Math.max(Math.ceil(urgent), Math.floor(want / 4)))
        : Math.max(1, Math.ceil(want / 2));
    this.inFlight = true;
    this.asked = want;
    this.lastUse = now;
    void this.source.lease(want, min, this.tokens).then(this.answered);
  }

  private readonly answered = (answer: LeaseAnswer): void => {
    this.inFlight = false;
    if (this.closed || !this.limited) {
      if (answer.granted > 0) this.source.giveBack(answer.granted, this.tokens + answer.granted);
      return;
    }
    this.tokens += answer.granted;
    this.trim();
    const now = this.clock.now();
    // Less than asked: the shared bucket is empty now. Asking again before half a lease has accrued there
    // would be answered with nothing (or a sliver), so not before then: about 20 calls a second at most.
    const rate = this.current.bytesPerSecond;
    if (answer.granted > 0 && answer.granted < this.asked && rate > 0) {
      this.notBefore = now + (this.max / 2 / rate) * 1000;
    }
    if (answer.granted === 0) {
      // Asking again sooner would be answered "nothing" again: each chunk would cost a call.
      const delay = Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, answer.retryMs));
      this.notBefore = now + delay;
      if (this.waiters > 0) this.retryTimer = this.clock.setTimer(this.retry, delay);
      return;
    }
    this.dispatch(now);
    if (this.tokens > 0) this.armIdle();
  };

  private readonly retry = (): void => {
    this.retryTimer = undefined;
    this.dispatch(this.clock.now());
  };

  /** More than one lease's worth (a piece given back on top of a new grant) goes back at once. */
  private trim(): void {
    const excess = Math.floor(this.tokens - this.max);
    if (excess > 0) {
      this.source.giveBack(excess, this.tokens);
      this.tokens -= excess;
    }
  }

  private armIdle(): void {
    if (this.idleTimer !== undefined || this.closed) return;
    this.idleTimer = this.clock.setTimer(this.onIdle, IDLE_RETURN_MS);
  }

  private readonly onIdle = (): void => {
    this.idleTimer = undefined;
    if (this.tokens <= 0) return;
    const idleFor = this.clock.now() - this.lastUse;
    if (this.waiters === 0 && !this.inFlight && idleFor >= IDLE_RETURN_MS) {
      this.returnAll();
      return;
    }
    this.idleTimer = this.clock.setTimer(this.onIdle, Math.max(1, IDLE_RETURN_MS - idleFor));
  };

  private returnAll(): void {
    const bytes = Math.floor(this.tokens);
    if (bytes > 0) this.source.giveBack(bytes, this.tokens);
    this.tokens = 0;
  }

  private cancelTimers(): void {
    if (this.retryTimer !== undefined) this.clock.clearTimer(this.retryTimer);
    if (this.idleTimer !== undefined) this.clock.clearTimer(this.idleTimer);
    this.retryTimer = undefined;
    this.idleTimer = undefined;
  }
}

/** Held bytes unused this long go back to the store, so an idle gateway does not sit on another's budget. */
export const IDLE_RETURN_MS = 1000;
/** How often a bucket asks again while the store does not answer (the lease source reports the outage). */
export const STORE_RETRY_MS = 1000;
/** The store's "ask again in" is followed within these bounds (a spent quota may say hours). */
const MIN_RETRY_MS = 5;
const MAX_RETRY_MS = 60_000;
