import type { Clock, TimerHandle } from '../time/clock.js';

/** One source's suppressed lines in a finished window. */
export interface SuppressionSummary {
  readonly source: string;
  /** Lines not written, by event kind (e.g. `CONNECT denied/malformed_identity`). */
  readonly suppressed: Readonly<Record<string, number>>;
  readonly total: number;
  readonly windowMs: number;
}

export interface SuppressionOptions {
  /** Lines per source address per window that are written in full; 0 = never suppress. */
  readonly perSource: number;
  /** Lines across all sources per window. */
  readonly total: number;
  readonly windowMs: number;
  /** Sources tracked at once; beyond it the oldest window is closed early (its summary written). */
  readonly maxSources: number;
  readonly clock: Clock;
  readonly onSummary: (summary: SuppressionSummary) => void;
}

interface Window {
  start: number;
  written: number;
  suppressed: Map<string, number> | undefined;
}

/**
 * Keeps a client that can only be refused from flooding the audit log (a long identity plus a reset loop
 * wrote 260 MiB in 5 s, and a slow stdout stalls the gateway by design). Per source address, the first
 * `perSource` refusal lines of each window are written in full; the rest are counted, and one
 * `denies suppressed` line with the counts by kind closes the window, so nothing is lost but the
 * repetition. Metrics count every refusal regardless.
 */
export class LogSuppressor {
  private readonly windows = new Map<string, Window>();
  private totalStart = 0;
  private totalWritten = 0;
  private timer: TimerHandle | undefined;

  constructor(private readonly options: SuppressionOptions) {}

  /** True when the line for `source` and `kind` should be written; otherwise it was counted. */
  admit(source: string, kind: string): boolean {
    const { perSource, windowMs, clock } = this.options;
    if (perSource === 0) return true;
    const now = clock.now();
    if (now - this.totalStart >= windowMs) {
      this.totalStart = now;
      this.totalWritten = 0;
    }
    let window = this.windows.get(source);
    if (window !== undefined && now - window.start >= windowMs) {
      this.close(source, window);
      window = undefined;
    }
    if (window === undefined) {
      if (this.windows.size >= this.options.maxSources) this.evictOldest();
      window = { start: now, written: 0, suppressed: undefined };
      this.windows.set(source, window);
      this.timer ??= clock.setTimer(this.sweep, windowMs);
    }
    if (window.written < perSource && this.totalWritten < this.options.total) {
      window.written++;
      this.totalWritten++;
      return true;
    }
    window.suppressed ??= new Map();
    window.suppressed.set(kind, (window.suppressed.get(kind) ?? 0) + 1);
    return false;
  }

  /** Writes every pending summary now (shutdown). */
  flush(): void {
    for (const [source, window] of [...this.windows]) this.close(source, window);
    if (this.timer !== undefined) this.options.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  private readonly sweep = (): void => {
    this.timer = undefined;
    const now = this.options.clock.now();
    for (const [source, window] of [...this.windows]) {
      if (now - window.start >= this.options.windowMs) this.close(source, window);
    }
    if (this.windows.size > 0) this.timer = this.options.clock.setTimer(this.sweep, this.options.windowMs);
  };

  private evictOldest(): void {
    const oldest = this.windows.entries().next();
    if (oldest.done !== true) this.close(oldest.value[0], oldest.value[1]);
  }

  private close(source: string, window: Window): void {
    this.windows.delete(source);
    if (window.suppressed === undefined) return;
    let total = 0;
    const suppressed: Record<string, number> = {};
    for (const [kind, n] of window.suppressed) {
      suppressed[kind] = n;
      total += n;
    }
    this.options.onSummary({ source, suppressed, total, windowMs: this.options.windowMs });
  }
}

/** The address part of `ip:port` / `[v6]:port`: floods are counted per host, not per connection. */
export function sourceOf(peerAddr: string): string {
  if (peerAddr.startsWith('[')) return peerAddr.slice(1, peerAddr.indexOf(']'));
  const colon = peerAddr.lastIndexOf(':');
  return colon < 0 ? peerAddr : peerAddr.slice(0, colon);
}
