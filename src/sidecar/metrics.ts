import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type SpanTotals, scrapeSpanTotals, traceSpansCounter } from '../metrics/gateway-metrics.js';
import { LiveCounter } from '../metrics/live-counter.js';
import { LATENCY_BUCKETS_S, monotonicMs, seconds } from '../metrics/units.js';
import type { SidecarSubscriber } from './tunnel-events.js';

export const SIDECAR_PREFIX = 'agent_gateway_sidecar_';

/**
 * The sidecar's Prometheus metrics (`agent_gateway_sidecar_*`), served on its own admin address: tunnels
 * asked for and how the gateway answered, how long that took, open tunnels, bytes, close causes. Fed by
 * its tunnel events; nothing per relayed chunk.
 */
export class SidecarMetrics {
  readonly registry = new Registry();
  private readonly tunnels: Counter<'kind' | 'status' | 'answered_by'>;
  private readonly connectDuration: Histogram<'answered_by'>;
  private readonly localRefusals: Counter<'status'>;
  private readonly closed: Counter<'cause'>;
  private readonly bytes: LiveCounter<'direction'>;
  private readonly open: Gauge;
  private readonly spans: LiveCounter<'outcome'>;
  private openNow = 0;

  constructor(private readonly sources: { traceSpans(): SpanTotals | undefined }) {
    const registers = [this.registry];
    this.tunnels = new Counter({
      name: `${SIDECAR_PREFIX}tunnels_total`,
      help: 'Tunnel requests answered, by kind (connect, http), status and who answered (gateway, sidecar)',
      labelNames: ['kind', 'status', 'answered_by'],
      registers,
    });
    this.connectDuration = new Histogram({
      name: `${SIDECAR_PREFIX}connect_duration_seconds`,
      help: "From the local request to the gateway's answer",
      labelNames: ['answered_by'],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.localRefusals = new Counter({
      name: `${SIDECAR_PREFIX}local_refusals_total`,
      help: 'Local requests refused before the gateway was asked (407 proxy credential, 400 bad request)',
      labelNames: ['status'],
      registers,
    });
    this.closed = new Counter({
      name: `${SIDECAR_PREFIX}tunnels_closed_total`,
      help: 'Tunnels (and forwarded http:// requests) that ended, by close cause',
      labelNames: ['cause'],
      registers,
    });
    this.bytes = new LiveCounter(
      new Counter({
        name: `${SIDECAR_PREFIX}tunnel_bytes_total`,
        help: 'Bytes relayed by tunnels that ended, by direction',
        labelNames: ['direction'],
        registers,
      }),
    );
    this.open = new Gauge({ name: `${SIDECAR_PREFIX}open_tunnels`, help: 'Tunnels open now', registers });
    this.spans = new LiveCounter(traceSpansCounter(this.registry, SIDECAR_PREFIX));
    for (const status of ['200', '403', '502']) this.tunnels.labels('connect', status, 'gateway').inc(0);
    for (const status of ['407', '400']) this.localRefusals.labels(status).inc(0);
    collectDefaultMetrics({ register: this.registry, prefix: SIDECAR_PREFIX });
  }

  subscriber(now: () => number = monotonicMs): SidecarSubscriber {
    return {
      tunnelAnswered: (e) => {
        this.tunnels.labels(e.kind, String(statusLabel(e.status)), e.answeredBy).inc();
        this.connectDuration.labels(e.answeredBy).observe(seconds(now() - e.startedAt));
        if (e.status === 200) this.openNow++;
      },
      tunnelEnded: (e) => {
        this.openNow--;
        this.closed.labels(e.cause).inc();
        this.bytes.add(['client_to_dest'], e.bytesClientToDest);
        this.bytes.add(['dest_to_client'], e.bytesDestToClient);
      },
      localRefusal: (e) => this.localRefusals.labels(String(statusLabel(e.status))).inc(),
    };
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    this.open.set(this.openNow);
    this.bytes.scrape([]);
    scrapeSpanTotals(this.spans, this.sources.traceSpans());
    return this.registry.metrics();
  }
}

/** HTTP status codes are a small fixed set; anything outside 100-599 is not a status. */
function statusLabel(status: number): number | string {
  return Number.isInteger(status) && status >= 100 && status <= 599 ? status : 'other';
}
