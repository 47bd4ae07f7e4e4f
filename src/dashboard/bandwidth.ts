import type { GatewayTunnel } from './gateway-link.js';

/** One identity's traffic in one sampling interval, in bytes per second, summed over every gateway. */
export interface RatePoint {
  /** Wall-clock ms at the end of the interval. */
  readonly t: number;
  readonly up: number;
  readonly down: number;
}

/** What one gateway enforces for an identity (its `/v1/limits` answer); 0 = unlimited. */
export interface IdentityLimit {
  readonly gateway: string;
  readonly upBytesPerSecond: number;
  readonly downBytesPerSecond: number;
  /**
   * The identity's byte quota over a long window, as the gateway reports it: null until a gateway
   * reports one (issue 13's budgets plug in through the gateway's QuotaSource, admin/limit-routes.ts).
   */
  readonly quota: {
    readonly limitBytes: number;
    readonly usedBytes: number;
    readonly windowS: number;
  } | null;
}

export interface IdentitySeries {
  readonly identity: string;
  readonly points: readonly RatePoint[];
  readonly limits: readonly IdentityLimit[];
}

/** A tunnel with its rate over the last interval, as the dashboard shows it. */
export interface SampledTunnel extends GatewayTunnel {
  readonly gateway: string;
  readonly up_bytes_per_second: number;
  readonly down_bytes_per_second: number;
}

export interface BandwidthOptions {
  readonly windowMs: number;
  readonly intervalMs: number;
  /** Identities tracked at most (the least recently active is forgotten first): bounds memory. */
  readonly maxIdentities: number;
}

interface Seen {
  up: number;
  down: number;
  identity: string;
}

/**
 * Per-identity bandwidth from the gateways' tunnel byte counters, sampled at a fixed interval: each
 * tunnel's rate is its counters' growth since the last sample, an identity's rate the sum over its
 * tunnels on every gateway. Bytes a tunnel moved between its last sample and its close come from its
 * `tunnel closed` record, so short tunnels count too.
 */
export class BandwidthSeries {
  private readonly seen = new Map<string, Seen>();
  private readonly series = new Map<string, { points: RatePoint[]; limits: IdentityLimit[] }>();
  private readonly pending = new Map<string, { up: number; down: number }>();
  private lastAt: number | undefined;

  constructor(private readonly options: BandwidthOptions) {}

  /** A tunnel closed with these totals: what it moved since its last sample counts in the next point. */
  closed(gateway: string, tunnelId: string, up: number, down: number): void {
    const key = `${gateway}\u0000${tunnelId}`;
    const before = this.seen.get(key);
    if (before === undefined) return;
    this.seen.delete(key);
    this.add(before.identity, Math.max(0, up - before.up), Math.max(0, down - before.down));
  }

  /**
   * One sample of every gateway's open tunnels at wall-clock `at`. A tunnel not seen before counts from
   * zero if it is younger than two intervals (it opened since the last sample), else from its current
   * counters (the dashboard started, or the gateway was unreachable: its past is not this interval's).
   */
  sample(at: number, tunnels: ReadonlyArray<{ gateway: string; tunnel: GatewayTunnel }>): SampledTunnel[] {
    const dt = this.lastAt === undefined ? this.options.intervalMs : Math.max(1, at - this.lastAt);
    const out: SampledTunnel[] = [];
    const live = new Set<string>();
    for (const { gateway, tunnel: t } of tunnels) {
      const key = `${gateway}\u0000${t.tunnel_id}`;
      live.add(key);
      const before = this.seen.get(key);
      const fresh =
        before === undefined && t.age_ms <= 2 * this.options.intervalMs && this.lastAt !== undefined;
      const fromUp = before?.up ?? (fresh ? 0 : t.bytes_client_to_dest);
      const fromDown = before?.down ?? (fresh ? 0 : t.bytes_dest_to_client);
      const up = Math.max(0, t.bytes_client_to_dest - fromUp);
      const down = Math.max(0, t.bytes_dest_to_client - fromDown);
      this.seen.set(key, {
        up: t.bytes_client_to_dest,
        down: t.bytes_dest_to_client,
        identity: t.source_identity,
      });
      this.add(t.source_identity, up, down);
      out.push({
        ...t,
        gateway,
        up_bytes_per_second: Math.round((up * 1000) / dt),
        down_bytes_per_second: Math.round((down * 1000) / dt),
      });
    }
    // Tunnels gone without a close record (a gateway restarted or became unreachable).
    for (const key of this.seen.keys()) if (!live.has(key)) this.seen.delete(key);
    this.lastAt = at;
    this.flush(at, dt);
    return out;
  }

  /** The limits gateways reported for an identity (kept until the next report). */
  setLimits(identity: string, limits: IdentityLimit[]): void {
    const s = this.series.get(identity);
    if (s !== undefined) s.limits = limits;
  }

  identities(): string[] {
    return [...this.series.keys()];
  }

  snapshot(): IdentitySeries[] {
    return [...this.series].map(([identity, s]) => ({ identity, points: s.points, limits: s.limits }));
  }

  /** The newest point of every identity that has one at `at` (for the live stream). */
  latest(at: number): Array<{ identity: string; point: RatePoint }> {
    const out: Array<{ identity: string; point: RatePoint }> = [];
    for (const [identity, s] of this.series) {
      const point = s.points.at(-1);
      if (point !== undefined && point.t === at) out.push({ identity, point });
    }
    return out;
  }

  private add(identity: string, up: number, down: number): void {
    const p = this.pending.get(identity) ?? { up: 0, down: 0 };
    p.up += up;
    p.down += down;
    this.pending.set(identity, p);
  }

  private flush(at: number, dt: number): void {
    const keep = Math.ceil(this.options.windowMs / this.options.intervalMs) + 1;
    for (const [identity, bytes] of this.pending) {
      let s = this.series.get(identity);
      if (s === undefined) {
        s = { points: [], limits: [] };
        this.series.set(identity, s);
      }
      // Map order is insertion order: re-inserting marks the identity as the most recently active.
      this.series.delete(identity);
      this.series.set(identity, s);
      s.points.push({
        t: at,
        up: Math.round((bytes.up * 1000) / dt),
        down: Math.round((bytes.down * 1000) / dt),
      });
      if (s.points.length > keep) s.points.splice(0, s.points.length - keep);
    }
    this.pending.clear();
    // Identities idle for the whole window drop out; beyond the bound, the least recently active.
    for (const [identity, s] of this.series) {
      const last = s.points.at(-1);
      if (last !== undefined && at - last.t > this.options.windowMs) this.series.delete(identity);
    }
    while (this.series.size > this.options.maxIdentities) {
      const oldest = this.series.keys().next().value;
      if (oldest === undefined) break;
      this.series.delete(oldest);
    }
  }
}
