import { performance } from 'node:perf_hooks';

/** An armed timer, opaque to its user: only handed back to {@link Clock.clearTimer}. */
export type TimerHandle = unknown;

/**
 * Time as the rate limiter, the registry gate and the tunnel deadlines see it. Injected so that unit tests
 * drive them deterministically (a fake clock that advances only when told and fires timers in order)
 * instead of sleeping and asserting on durations that a loaded machine would not honour.
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
    // Above 2^31-1 ms Node would fire after 1 ms instead: callers with far deadlines re-arm (see
    // MAX_TIMER_MS), so an early wake-up is only a re-check.
    return setTimeout(callback, Math.min(MAX_TIMER_MS, Math.max(1, Math.ceil(delayMs)))).unref();
  },
  clearTimer(handle) {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** The longest delay a Node timer honours (about 24.8 days); a deadline further away is re-armed. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
