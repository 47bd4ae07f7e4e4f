import type { Counter } from 'prom-client';

/**
 * A counter of something that grows inside open tunnels (bytes) without the relay reporting each chunk:
 * closed tunnels add their final totals, and at scrape time the live counters of the open ones are added
 * on top. A tunnel's final total is at least its last live reading, so the sum never shrinks when it
 * closes, and the counter is advanced by the difference since the last scrape: monotonic, as a
 * Prometheus counter must be, with scrape-interval granularity for live rates.
 */
export class LiveCounter<L extends string> {
  private readonly closed = new Map<string, number>();
  private readonly reported = new Map<string, number>();

  constructor(private readonly counter: Counter<L>) {}

  /** A tunnel closed: its final count under these label values (in the counter's label order). */
  add(labels: readonly string[], n: number): void {
    if (n <= 0) return;
    const key = labels.join('\u0000');
    this.closed.set(key, (this.closed.get(key) ?? 0) + n);
  }

  /** Brings the counter up to closed totals plus `live` (the open tunnels' counts now). */
  scrape(live: Iterable<readonly [labels: readonly string[], n: number]>): void {
    const totals = new Map(this.closed);
    for (const [labels, n] of live) {
      if (n <= 0) continue;
      const key = labels.join('\u0000');
      totals.set(key, (totals.get(key) ?? 0) + n);
    }
    for (const [key, total] of totals) {
      const before = this.reported.get(key) ?? 0;
      if (total <= before) continue;
      this.counter.labels(...(key.split('\u0000') as never[])).inc(total - before);
      this.reported.set(key, total);
    }
  }
}
