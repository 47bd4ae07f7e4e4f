import type { BucketSpec } from '../config/rate-limit.js';
import { type LeaseAnswer, type LeaseSource, STORE_RETRY_MS } from '../ratelimit/leased-bucket.js';
import type { BudgetBucketName, GatewayEvents } from '../session/events.js';
import type { Clock } from '../time/clock.js';
import { LeaseAccount } from './lease-account.js';
import { LEASE_TTL_S } from './postgres-store.js';
import type { BudgetStore } from './store.js';

export interface StoreLeaseSourceOptions {
  readonly identity: string;
  readonly bucket: BudgetBucketName;
  /** The bucket's current limits (they change on reload). */
  readonly spec: () => BucketSpec;
  readonly store: BudgetStore;
  readonly events: GatewayEvents;
  readonly clock: Clock;
}

const NO_QUOTA = { bytes: 0, windowS: 86_400 } as const;

/**
 * One leased bucket's link to the store: asks for leases with the bucket's current limits, remembers which
 * lease the held bytes came from, hands unused bytes back, times every call (`budgetLease`) and announces
 * a spent quota (`quotaExhausted`, once per identity and window: the store says who is first). A failed
 * call grants nothing (fail closed) and is tried again after {@link STORE_RETRY_MS}; a failed hand-back is
 * not retried, so those bytes count as spent.
 */
export class StoreLeaseSource implements LeaseSource {
  private readonly account = new LeaseAccount(LEASE_TTL_S * 1000);

  constructor(private readonly options: StoreLeaseSourceOptions) {}

  async lease(want: number, min: number, balance: number): Promise<LeaseAnswer> {
    const { identity, bucket, store, events, clock } = this.options;
    const spec = this.options.spec();
    const quota = bucket === 'total' ? NO_QUOTA : (spec.quota ?? NO_QUOTA);
    const started = clock.now();
    try {
      const answer = await store.lease({
        identity,
        bucket,
        bytesPerSecond: spec.bytesPerSecond,
        burstBytes: spec.burstBytes,
        quota,
        want,
        min,
      });
      const now = clock.now();
      events.emit('budgetLease', {
        identity,
        bucket,
        requestedBytes: want,
        grantedBytes: answer.granted,
        latencyMs: now - started,
        ok: true,
      });
      if (answer.granted > 0 && answer.leaseId !== undefined) {
        this.account.granted(answer.leaseId, answer.granted, balance + answer.granted, now);
      }
      if (answer.quotaExhausted && answer.announce && bucket !== 'total') {
        events.emit('quotaExhausted', {
          identity,
          direction: bucket,
          quotaBytes: quota.bytes,
          windowS: quota.windowS,
          usedBytes: answer.quotaUsed ?? quota.bytes,
          retryAfterS: (answer.retryMs ?? 0) / 1000,
        });
      }
      return { granted: answer.granted, retryMs: answer.retryMs ?? STORE_RETRY_MS };
    } catch {
      events.emit('budgetLease', {
        identity,
        bucket,
        requestedBytes: want,
        grantedBytes: 0,
        latencyMs: clock.now() - started,
        ok: false,
      });
      return { granted: 0, retryMs: STORE_RETRY_MS };
    }
  }

  giveBack(bytes: number, balance: number): void {
    const parts = this.account.takeBack(bytes, balance, this.options.clock.now());
    if (parts.length === 0) return;
    this.options.store.giveBack(parts).catch(() => {
      // The store is away: these bytes count as spent (fail closed); its health is reported by the gate.
    });
  }
}
