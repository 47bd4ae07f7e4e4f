import { performance } from 'node:perf_hooks';

/** An armed timer, opaque to the limiter: only handed back to {@link Clock.clearTimer}. */
export type TimerHandle = unknown;

/**
 * Time as the limiter sees it. Injected so that unit tests drive buckets deterministically (a fake
 * clock that advances only when told and fires timers in order) instead of sleeping and asserting on
 * durations that a loaded machine would not honour.
 */
export interface Clock {
  /** Milliseconds on a monotonic clock (fractions allowed); only differences matter. */
  now(): number;
  /** Calls `callback` once, no earlier than `delayMs` from now. */
  setTimer(callback: () => void, delayMs: number): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

/**
 * The process clock: `performance.now()` (monotonic, sub-millisecond) and Node timers. Timers are
 * unref'd: a limiter waiting to release a paused tunnel never has to keep the process alive by itself
 * (the tunnel's sockets do that), and shutdown must not wait for a bucket to refill.
 */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(callback, delayMs) {
    // Node fires timers on whole milliseconds and treats anything below 1 as 1; rounding up says so.
    return setTimeout(callback, Math.max(1, Math.ceil(delayMs))).unref();
  },
  clearTimer(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};
