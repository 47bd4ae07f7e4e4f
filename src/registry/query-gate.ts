/** How a gated query ended. A timeout or error is the caller's deny; it never throws. */
export type GatedResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly kind: 'timeout' | 'error'; readonly error: unknown };

/** Told about every query that ran (for the registry's health state and metrics). */
export interface GateObserver {
  settled(ok: boolean, error: unknown, durationMs: number): void;
}

import { type Clock, systemClock } from '../time/clock.js';

interface Waiter {
  readonly start: () => void;
  done: boolean;
}

/**
 * Registry queries under a deadline, at most `maxInFlight` of them handed to postgres.js at once.
 *
 * Why not simply race each query against a timer and cancel the loser: postgres.js 3.4 strands a pooled
 * connection for good when a query is cancelled while that connection is still being opened for it (the
 * query is the connection's first one; once the server answers, the driver skips the cancelled query and
 * never puts the connection back into the pool). Under CONNECT traffic during a registry outage every
 * connection ended that way, and the gateway denied everything with `policy_timeout` until it was
 * restarted (issue 10, item 1). So:
 * - a query that was never sent is never cancelled: on its deadline the caller gets its timeout, and the
 *   query is left to run (or fail) when its connection opens, holding its slot until then;
 * - a query on the wire is cancelled through the protocol's cancel request, which stops the server-side work;
 * - because the slots are bounded by the pool size, nothing piles up in the driver's own queue during an
 *   outage; callers wait here instead, each within its own deadline, and leave the queue when it passes.
 */
export class QueryGate {
  private inFlight = 0;
  private readonly waiting: Waiter[] = [];
  private head = 0;
  /** While set, every query is refused at once with this reason (see suspend()). */
  private suspended: string | undefined;

  constructor(
    private readonly maxInFlight: number,
    private readonly observer?: GateObserver,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Queries started and not yet settled (for tests, diagnostics and the pool metrics). */
  get busy(): number {
    return this.inFlight;
  }

  /** Queries waiting for a slot now (the pool metrics). */
  get queued(): number {
    let n = 0;
    for (let i = this.head; i < this.waiting.length; i++) if (!this.waiting[i]!.done) n++;
    return n;
  }

  /**
   * Refuses every query at once (an error result with `reason`, no query sent) until resume(): the
   * gateway does this until it has checked that the registry is at the schema it reads, so that no
   * decision is ever made on rows of a schema it has not verified.
   */
  suspend(reason: string): void {
    this.suspended = reason;
  }

  resume(): void {
    this.suspended = undefined;
  }

  /** Runs `start()` (which must issue exactly one query) within `deadlineMs`, counting from now. */
  run<T>(start: () => Promise<T>, deadlineMs: number): Promise<GatedResult<T>> {
    if (this.suspended !== undefined) {
      return Promise.resolve({ ok: false, kind: 'error', error: new Error(this.suspended) });
    }
    return new Promise((resolve) => {
      let finished = false;
      let pending: Promise<T> | undefined;
      const finish = (result: GatedResult<T>) => {
        if (finished) return;
        finished = true;
        this.clock.clearTimer(timer);
        resolve(result);
      };
      const waiter: Waiter = {
        done: false,
        start: () => {
          waiter.done = true;
          this.inFlight++;
          const startedAt = this.clock.now();
          try {
            pending = start();
          } catch (error) {
            this.inFlight--;
            this.next();
            finish({ ok: false, kind: 'error', error });
            return;
          }
          pending.then(
            (value) => {
              this.release(true, undefined, startedAt);
              finish({ ok: true, value });
            },
            (error: unknown) => {
              this.release(false, error, startedAt);
              finish({ ok: false, kind: isTimeoutError(error) ? 'timeout' : 'error', error });
            },
          );
        },
      };
      const timer = this.clock.setTimer(
        () => {
          if (!waiter.done) {
            // Still queued here: it leaves the queue (skipped when its turn comes).
            waiter.done = true;
          } else if (pending !== undefined) {
            cancelIfSent(pending);
          }
          finish({
            ok: false,
            kind: 'timeout',
            error: new Error(`no answer from the registry within ${deadlineMs} ms`),
          });
        },
        Math.max(1, deadlineMs),
      );
      if (this.inFlight < this.maxInFlight && this.head === this.waiting.length) waiter.start();
      else this.waiting.push(waiter);
    });
  }

  private release(ok: boolean, error: unknown, startedAt: number): void {
    this.inFlight--;
    this.observer?.settled(ok, error, this.clock.now() - startedAt);
    this.next();
  }

  private next(): void {
    while (this.inFlight < this.maxInFlight && this.head < this.waiting.length) {
      const waiter = this.waiting[this.head++]!;
      if (!waiter.done) waiter.start();
    }
    // Compact once the consumed prefix dominates, so the array does not grow with the traffic.
    if (this.head > 64 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  }
}

/** SQLSTATEs and driver codes that mean "too slow" rather than "broken". */
export function isTimeoutError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // 57014: statement_timeout or cancel; 55P03: lock_timeout; CONNECT_TIMEOUT: postgres.js connect budget.
  return code === '57014' || code === '55P03' || code === 'CONNECT_TIMEOUT';
}

/**
 * Cancels a query the server is executing; leaves one that was never sent alone (see QueryGate). Reads
 * postgres.js 3.4 internals (`state` is set when the query is written to a connection, `canceller` is the
 * pool's cancel function), because the public cancel() cannot tell the two cases apart and crashes the
 * process with an unhandled rejection when the cancel request's own connection fails. If a later
 * postgres.js changes that shape, nothing is cancelled: the server's statement_timeout still ends the query.
 */
function cancelIfSent(query: Promise<unknown>): void {
  const internal = query as unknown as {
    state?: unknown;
    canceller?: ((q: unknown) => unknown) | null;
  };
  if (internal.state === null || internal.state === undefined) return;
  const canceller = internal.canceller;
  if (typeof canceller !== 'function') return;
  internal.canceller = null;
  try {
    void Promise.resolve(canceller(query)).catch(() => {
      // The server is unreachable; its statement_timeout still ends the query there.
    });
  } catch {
    // Same: nothing more we can do, and the caller already has its timeout.
  }
}
