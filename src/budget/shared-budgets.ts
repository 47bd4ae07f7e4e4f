import {
  type BucketLimit,
  type BucketSpec,
  limitsFor,
  type RateLimitSettings,
  uploadSpec,
} from '../config/rate-limit.js';
import { LeasedBucket } from '../ratelimit/leased-bucket.js';
import type { BucketFactory, RateLimiter, RateLimiterOptions } from '../ratelimit/limiter.js';
import { RegistryHealth } from '../registry/registry-health.js';
import type { GatewayEvents } from '../session/events.js';
import { type Clock, systemClock } from '../time/clock.js';
import { StoreLeaseSource } from './lease-source.js';
import { PostgresBudgetStore } from './postgres-store.js';
import { SharedTunnels } from './shared-tunnels.js';
import type { BudgetStore } from './store.js';

export interface SharedBudgetsOptions {
  readonly databaseUrl: string;
  readonly connectTimeoutMs: number;
  readonly events: GatewayEvents;
  readonly clock?: Clock;
}

/** What the gateway holds while budgets are shared: the limiter's parts, and how to start and stop them. */
export interface SharedBudgets {
  /** Buckets leased from the store and the cross-gateway tunnel check, for the RateLimiter. */
  readonly limiterOptions: RateLimiterOptions;
  /** Starts the tunnel-count heartbeat with the limiter's counts. */
  track(limiter: RateLimiter): void;
  /** Stops the heartbeat, removes this gateway's counts and closes the pool (after limiter.stop()). */
  stop(): Promise<void>;
  /** An identity's upload quota as the store holds it now (the dashboard's bandwidth view); null: none. */
  quotaFor(identity: string, settings: RateLimitSettings): Promise<QuotaUse | null>;
}

/** An upload quota and what its sliding window holds now (leased bytes count as used). */
export interface QuotaUse {
  readonly quotaBytes: number;
  readonly usedBytes: number;
  readonly windowS: number;
}

/**
 * `[rate_limit] shared = true`: the budget store in the registry database, checked before the gateway
 * listens (the extension's version and the role's privileges; a mismatch refuses to start rather than fall
 * back to per-process limits), its health published as `budgetStoreStatus` on every change.
 */
export async function startSharedBudgets(options: SharedBudgetsOptions): Promise<SharedBudgets> {
  const clock = options.clock ?? systemClock;
  const { events } = options;
  const health = new RegistryHealth((available, error) =>
    events.emit('budgetStoreStatus', { available, error }),
  );
  const store = new PostgresBudgetStore({
    databaseUrl: options.databaseUrl,
    connectTimeoutMs: options.connectTimeoutMs,
    observer: health,
  });
  try {
    await store.check();
  } catch (err) {
    await store.stop();
    throw err;
  }
  const tunnels = new SharedTunnels(store, clock);
  return {
    limiterOptions: { buckets: leasedBuckets(store, events, clock), admission: tunnels },
    track(limiter) {
      tunnels.start(() => limiter.tunnelCounts());
    },
    async quotaFor(identity, settings) {
      const spec = uploadSpec(limitsFor(settings, identity));
      if (spec.quota === undefined || spec.quota.bytes === 0) return null;
      const peek = await store.peek(identity, 'upload', spec);
      return { quotaBytes: spec.quota.bytes, usedBytes: peek.quotaUsed ?? 0, windowS: spec.quota.windowS };
    },
    async stop() {
      tunnels.stop();
      // Hand-backs started by limiter.stop() are among the store's pending calls: it lets them finish.
      await store.stop();
    },
  };
}

/** Leased buckets: the identity's upload and download buckets and the all-identity one. */
export function leasedBuckets(store: BudgetStore, events: GatewayEvents, clock: Clock): BucketFactory {
  const source = (identity: string, bucket: 'upload' | 'download' | 'total', spec: () => BucketSpec) =>
    new StoreLeaseSource({ identity, bucket, spec, store, events, clock });
  return {
    identityBucket(kind, identity, spec) {
      const bucket: LeasedBucket = new LeasedBucket(
        kind,
        spec,
        source(identity, kind === 'identity_upload' ? 'upload' : 'download', () => bucket.spec),
        clock,
      );
      return bucket;
    },
    totalBucket(limit: BucketLimit) {
      const bucket: LeasedBucket = new LeasedBucket(
        'total_upload',
        limit,
        source('', 'total', () => bucket.spec),
        clock,
      );
      return bucket;
    },
  };
}
