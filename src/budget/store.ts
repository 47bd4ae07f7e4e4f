import type { QuotaLimit } from '../config/rate-limit.js';
import type { BudgetBucketName } from '../session/events.js';

/**
 * The shared budget store as the gateway uses it: lease bytes, hand back what was not used, count tunnels.
 * One interface so that the leasing logic is tested against a fake and runs against PostgreSQL
 * (postgres-store.ts), where every decision is made on the database clock.
 */
export interface BudgetStore {
  lease(request: LeaseRequest): Promise<StoreLease>;
  /** Hands back unused bytes of leases; returns how many the store took back (an expired lease: none). */
  giveBack(parts: readonly LeasePart[]): Promise<number>;
  admitTunnel(request: TunnelRequest): Promise<StoreAdmission>;
  releaseTunnel(identity: string): Promise<void>;
  /** This gateway's tunnel counts, which also keeps them from expiring (a heartbeat). */
  sync(counts: ReadonlyMap<string, number>): Promise<void>;
  /** A clean stop: this gateway's tunnel counts go, and the pool closes. */
  stop(): Promise<void>;
}

export interface LeaseRequest {
  /** Empty for the all-identity bucket. */
  readonly identity: string;
  readonly bucket: BudgetBucketName;
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  /** The identity's quota in this direction (0 bytes: none; never for the all-identity bucket). */
  readonly quota: QuotaLimit;
  readonly want: number;
  readonly min: number;
}

export interface StoreLease {
  /** The lease's id in the store, for handing bytes back; undefined when nothing was granted. */
  readonly leaseId: string | undefined;
  readonly granted: number;
  /** Nothing granted: when asking again may succeed. */
  readonly retryMs: number | undefined;
  /** Nothing granted because the quota is spent. */
  readonly quotaExhausted: boolean;
  /** This caller is the first to find the quota spent in this window: the one to log it. */
  readonly announce: boolean;
  readonly quotaUsed: number | undefined;
}

export interface LeasePart {
  readonly leaseId: string;
  readonly bytes: number;
}

export interface TunnelRequest {
  readonly identity: string;
  readonly maxTunnels: number;
  readonly uploadQuota: QuotaLimit;
  readonly downloadQuota: QuotaLimit;
}

export type StoreAdmission =
  | { readonly status: 'ok'; readonly openTunnels: number }
  | { readonly status: 'too_many_tunnels'; readonly openTunnels: number }
  | {
      readonly status: 'over_quota';
      readonly direction: 'upload' | 'download';
      readonly retryAfterS: number;
    };
