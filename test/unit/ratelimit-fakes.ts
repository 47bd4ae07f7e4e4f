import type { Throttleable } from '../../src/ratelimit/direction.js';
import type { Clock } from '../../src/time/clock.js';

interface FakeTimer {
  readonly at: number;
  readonly seq: number;
  readonly callback: () => void;
  cancelled: boolean;
  /** Armed through the Clock interface (by the code under test), not by a fake source. */
  readonly armed: boolean;
}

/**
 * A clock that moves only when told. Timers fire in time order; `lateMs` makes every timer fire that
 * much after its due time (rounded up to whole milliseconds like Node's), to show that a late wake-up
 * costs no rate.
 */
export class FakeClock implements Clock {
  time = 0;
  timersArmed = 0;
  maxArmed = 0;
  private timers: FakeTimer[] = [];
  private seq = 0;

  constructor(private readonly options: { lateMs?: number; wholeMs?: boolean } = {}) {}

  now(): number {
    return this.time;
  }

  setTimer(callback: () => void, delayMs: number): FakeTimer {
    let at = this.time + Math.max(0, delayMs);
    if (this.options.wholeMs) at = Math.ceil(at);
    at += this.options.lateMs ?? 0;
    const timer: FakeTimer = { at, seq: this.seq++, callback, cancelled: false, armed: true };
    this.timers.push(timer);
    this.timersArmed++;
    this.maxArmed = Math.max(this.maxArmed, this.active());
    return timer;
  }

  clearTimer(handle: unknown): void {
    (handle as FakeTimer).cancelled = true;
  }

  /** Timers armed by the code under test and still pending. */
  active(): number {
    return this.timers.filter((t) => t.armed && !t.cancelled).length;
  }

  /** Runs every timer due up to now + ms, in order, then sets the time to now + ms. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      this.timers = this.timers.filter((t) => !t.cancelled);
      let next: FakeTimer | undefined;
      for (const t of this.timers) {
        if (t.at <= end && (next === undefined || t.at < next.at || (t.at === next.at && t.seq < next.seq))) {
          next = t;
        }
      }
      if (next === undefined) break;
      next.cancelled = true;
      this.time = Math.max(this.time, next.at);
      next.callback();
    }
    this.time = end;
  }

  /** Runs `fn` later, like the event loop delivering a socket read. */
  defer(fn: () => void, delayMs: number): void {
    const timer: FakeTimer = {
      at: this.time + delayMs,
      seq: this.seq++,
      callback: fn,
      cancelled: false,
      armed: false,
    };
    this.timers.push(timer);
  }
}

/**
 * A source with endless data, like a socket whose peer always has more to send: while not held it
 * reads a chunk every `gapMs` (the event loop's turn) and asks its gate how much of it may be forwarded;
 * a chunk the gate holds is kept (the source stops reading) until the gate grants it, and the next read
 * comes `resumeMs` after the chunk has gone. `delivered` counts bytes forwarded, `chunks` whole reads.
 */
export class FakeSource implements Throttleable {
  delivered = 0;
  chunks = 0;
  /** 1 while a chunk waits for the gate. */
  holds = 0;
  buffered = 0;
  private scheduled = false;
  private stopped = false;
  /** Bytes of the current chunk not forwarded yet. */
  private pending = 0;
  /** The gate every read passes (a ThrottledDirection's admit); by default everything goes. */
  gate: (bytes: number) => number = (bytes) => bytes;
  /** Sees every forwarded piece with the (fake) time it went. */
  onForward: ((bytes: number, time: number) => void) | undefined;

  constructor(
    private readonly clock: FakeClock,
    private readonly chunkBytes: number,
    private readonly opts: { gapMs?: number; resumeMs?: number; limitBytes?: number } = {},
  ) {}

  start(): void {
    this.schedule(this.opts.gapMs ?? 0.01);
  }

  stop(): void {
    this.stopped = true;
  }

  granted(bytes: number): void {
    if (this.pending === 0) return;
    this.holds = 0;
    this.forward(bytes);
    if (this.admitPending()) this.schedule(this.opts.resumeMs ?? 0.02);
  }

  bufferedBytes(): number {
    return this.buffered + this.pending;
  }

  private forward(bytes: number): void {
    const n = Math.min(bytes, this.pending);
    this.pending -= n;
    this.delivered += n;
    this.onForward?.(n, this.clock.time);
  }

  /** Asks the gate for the rest of the chunk; true when all of it has gone. */
  private admitPending(): boolean {
    while (this.pending > 0) {
      const n = this.gate(this.pending);
      if (n === 0) {
        this.holds = 1;
        return false;
      }
      this.forward(n);
    }
    return true;
  }

  private schedule(delay: number): void {
    if (this.scheduled || this.stopped) return;
    this.scheduled = true;
    this.clock.defer(() => {
      this.scheduled = false;
      if (this.holds > 0 || this.stopped) return;
      const left = (this.opts.limitBytes ?? Number.POSITIVE_INFINITY) - (this.delivered + this.pending);
      if (left <= 0) return;
      this.pending = Math.min(this.chunkBytes, left);
      this.chunks++;
      if (this.admitPending()) this.schedule(this.opts.gapMs ?? 0.01);
    }, delay);
  }
}

export const KiB = 1024;
export const MiB = 1024 * 1024;
