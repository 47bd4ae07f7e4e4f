import { type GatewayMetrics, type SpanTotals, scrapeSpanTotals } from './gateway-metrics.js';

/** An open tunnel as the scrape reads it (proxy/open-tunnels.ts TunnelView has this shape). */
export interface LiveTunnel {
  readonly session: { readonly identity: string };
  readonly bytesClientToDest: number;
  readonly bytesDestToClient: number;
  readonly throttled: boolean;
}

/** What the gateway knows only when asked: read once per scrape, never on the data path. */
export interface ScrapeSources {
  /** Every open tunnel with its live byte counters (OpenTunnels.list()). */
  openTunnels(): Iterable<LiveTunnel>;
  registryPool(): { readonly inUse: number; readonly waiting: number; readonly size: number };
  /** The registry answers at the verified schema. */
  registryUp(): boolean;
  liveCheck(): { readonly healthy: boolean; readonly mode: string } | undefined;
  readiness(): ReadonlyArray<{ readonly name: string; readonly ok: boolean }>;
  /** Span export totals, when tracing is on. */
  traceSpans(): SpanTotals | undefined;
}

const LIVE_CHECK_MODES = ['listening', 'polling', 'down'] as const;

/** Makes `metrics` read `sources` before every scrape. */
export function attachScrapeSources(metrics: GatewayMetrics, sources: ScrapeSources): void {
  metrics.beforeScrape = () => {
    const up: Array<readonly [readonly string[], number]> = [];
    const down: Array<readonly [readonly string[], number]> = [];
    const perIdentity: Array<readonly [readonly string[], number]> = [];
    let held = 0;
    const ids = metrics.identities;
    for (const t of sources.openTunnels()) {
      up.push([['client_to_dest'], t.bytesClientToDest]);
      down.push([['dest_to_client'], t.bytesDestToClient]);
      if (t.throttled) held++;
      if (ids !== undefined) {
        const label = ids.of(t.session.identity);
        perIdentity.push([[label, 'client_to_dest'], t.bytesClientToDest]);
        perIdentity.push([[label, 'dest_to_client'], t.bytesDestToClient]);
      }
    }
    metrics.bytes.scrape([...up, ...down]);
    ids?.bytes.scrape(perIdentity);
    metrics.tunnelsHeld.set(held);
    const pool = sources.registryPool();
    metrics.registryPoolInUse.set(pool.inUse);
    metrics.registryPoolWaiting.set(pool.waiting);
    metrics.registryPoolSize.set(pool.size);
    metrics.registryUp.set(sources.registryUp() ? 1 : 0);
    const live = sources.liveCheck();
    metrics.liveCheckHealthy.set(live?.healthy === true ? 1 : 0);
    for (const mode of LIVE_CHECK_MODES) metrics.liveCheckMode.labels(mode).set(live?.mode === mode ? 1 : 0);
    const checks = sources.readiness();
    metrics.ready.set(checks.every((c) => c.ok) ? 1 : 0);
    for (const c of checks) metrics.readinessCheck.labels(c.name).set(c.ok ? 1 : 0);
    scrapeSpanTotals(metrics.traceSpans, sources.traceSpans());
  };
}
