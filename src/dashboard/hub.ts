import type { FeedRecord, OperatorActionRecord } from '../eventfeed/records.js';
import { Ring } from '../eventfeed/ring.js';
import { DEFAULT_SSE_OPTIONS, formatEvent, SseHub } from '../eventfeed/sse-hub.js';
import { BandwidthSeries, type IdentityLimit, type SampledTunnel } from './bandwidth.js';
import type { DashboardGateway } from './config.js';
import { GatewayLink, type GatewayTunnel, type LinkState } from './gateway-link.js';

/** A feed record as the dashboard keeps it: which gateway (or OTLP source, or `dashboard`) it came from. */
export type DashboardRecord = FeedRecord & { readonly gateway: string };

/** Tunnels sent to browsers per sample at most (the busiest first); the total is sent alongside. */
const MAX_TUNNELS_SHOWN = 1000;
/** Limits and readiness are polled every this many samples. */
const SLOW_POLL_EVERY = 5;

export interface HubOptions {
  readonly gateways: readonly DashboardGateway[];
  readonly historyRecords: number;
  readonly sampleIntervalMs: number;
  readonly bandwidthWindowMs: number;
  readonly now?: () => number;
}

/**
 * Everything the dashboard knows, merged from every gateway: the records (decisions, closes, operator
 * actions, health changes) in one bounded ring, operator actions also in a ring of their own (so a busy
 * minute of decisions does not push the audit trail out), the latest tunnel sample with rates, and the
 * per-identity bandwidth series. Browsers get it over one SSE stream: history first, then live.
 */
export class DashboardHub {
  readonly links: GatewayLink[];
  private readonly records: Ring<DashboardRecord>;
  private readonly actions: Ring<DashboardRecord>;
  readonly browsers = new SseHub({
    ...DEFAULT_SSE_OPTIONS,
    maxClients: 64,
    maxBufferedBytes: 4 * 1024 * 1024,
  });
  readonly bandwidth: BandwidthSeries;
  private tunnels: SampledTunnel[] = [];
  private timer: NodeJS.Timeout | undefined;
  private samples = 0;
  private sampling = false;
  private readonly now: () => number;

  constructor(private readonly options: HubOptions) {
    this.now = options.now ?? Date.now;
    this.records = new Ring(options.historyRecords);
    this.actions = new Ring(Math.min(options.historyRecords, 10_000));
    this.bandwidth = new BandwidthSeries({
      windowMs: options.bandwidthWindowMs,
      intervalMs: options.sampleIntervalMs,
      maxIdentities: 500,
    });
    this.links = options.gateways.map(
      (g) =>
        new GatewayLink(g, {
          record: (gateway, record) => this.add(gateway, record),
          dropped: (gateway, count) => this.publish('dropped', { gateway, dropped: count }),
          state: (state) => this.publish('gateway', state),
        }),
    );
  }

  start(): void {
    for (const link of this.links) link.start();
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.options.sampleIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const link of this.links) link.stop();
    this.browsers.close();
  }

  link(name: string): GatewayLink | undefined {
    return this.links.find((l) => l.name === name);
  }

  /** A record from a gateway, an OTLP export or the dashboard itself: kept, and sent to every browser. */
  add(gateway: string, record: FeedRecord): void {
    const kept: DashboardRecord = { ...record, gateway };
    const entry = this.records.push(kept);
    if (record.type === 'operator_action') this.actions.push(kept);
    if (record.type === 'tunnel_closed') {
      this.bandwidth.closed(
        gateway,
        record.tunnel_id,
        record.bytes_client_to_dest,
        record.bytes_dest_to_client,
      );
    }
    this.browsers.publish(formatEvent('record', entry.json, entry.seq));
  }

  /** What a browser gets first on its stream, in this order, then live events. */
  history(): string[] {
    return [
      formatEvent('state', JSON.stringify(this.state())),
      ...this.records.since(0).map((e) => formatEvent('record', e.json, e.seq)),
    ];
  }

  /** The current picture (no records): gateways, tunnels, bandwidth series, the audit trail. */
  state(): Record<string, unknown> {
    return {
      gateways: this.links.map((l) => l.state),
      ...this.tunnelView(),
      bandwidth: this.bandwidth.snapshot(),
      audit: this.actions.since(0).map((e) => e.value as OperatorActionRecord & { gateway: string }),
      dropped_for_browsers: this.browsers.droppedTotal,
    };
  }

  /** Tunnels that an identity (or one tunnel id) names, by gateway: what a close must ask each one. */
  tunnelsOf(identity: string): SampledTunnel[] {
    return this.tunnels.filter((t) => t.source_identity === identity);
  }

  private tunnelView(): { tunnels: SampledTunnel[]; tunnels_total: number } {
    const busiest = [...this.tunnels].sort(
      (a, b) =>
        b.up_bytes_per_second + b.down_bytes_per_second - (a.up_bytes_per_second + a.down_bytes_per_second),
    );
    return { tunnels: busiest.slice(0, MAX_TUNNELS_SHOWN), tunnels_total: this.tunnels.length };
  }

  private publish(event: string, value: unknown): void {
    this.browsers.publish(formatEvent(event, JSON.stringify(value)));
  }

  /** One sampling round over every gateway; a round still running when the next is due is skipped. */
  private async sample(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const slow = this.samples++ % SLOW_POLL_EVERY === 0;
      const lists = await Promise.all(
        this.links.map(async (link) => {
          if (slow) void link.pollReadiness();
          try {
            return (await link.tunnels()).map((tunnel: GatewayTunnel) => ({ gateway: link.name, tunnel }));
          } catch {
            return [];
          }
        }),
      );
      const at = this.now();
      this.tunnels = this.bandwidth.sample(at, lists.flat());
      this.publish('tunnels', this.tunnelView());
      this.publish('sample', { t: at, points: this.bandwidth.latest(at) });
      if (slow) await this.refreshLimits();
    } finally {
      this.sampling = false;
    }
  }

  private async refreshLimits(): Promise<void> {
    const identities = this.bandwidth.identities().slice(0, 500);
    if (identities.length === 0) return;
    const perGateway = await Promise.all(
      this.links.map(async (link) => {
        try {
          return { gateway: link.name, answer: await link.limits(identities) };
        } catch {
          return undefined;
        }
      }),
    );
    for (const identity of identities) {
      const limits: IdentityLimit[] = [];
      for (const g of perGateway) {
        const l = (g?.answer['identities'] as Record<string, Record<string, unknown>> | undefined)?.[
          identity
        ];
        if (g === undefined || l === undefined) continue;
        const quota = l['quota'] as Record<string, unknown> | null | undefined;
        limits.push({
          gateway: g.gateway,
          upBytesPerSecond: Number(l['bytes_per_second'] ?? 0),
          downBytesPerSecond: Number(l['download_bytes_per_second'] ?? 0),
          quota:
            quota === null || quota === undefined
              ? null
              : {
                  limitBytes: Number(quota['upload_quota_bytes'] ?? 0),
                  usedBytes: Number(quota['upload_used_bytes'] ?? 0),
                  windowS: Number(quota['window_s'] ?? 0),
                },
        });
      }
      this.bandwidth.setLimits(identity, limits);
    }
    this.publish(
      'limits',
      this.bandwidth.snapshot().map((s) => ({ identity: s.identity, limits: s.limits })),
    );
  }
}

export type { LinkState };
