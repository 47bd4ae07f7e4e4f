import type { IdentityLimits } from '../config/rate-limit.js';
import type { AdmissionResult, TunnelAdmission } from '../ratelimit/limiter.js';
import type { Clock, TimerHandle } from '../time/clock.js';
import { SYNC_INTERVAL_MS } from './postgres-store.js';
import type { BudgetStore } from './store.js';

/**
 * The tunnel cap and the quota check across every gateway: one store call per CONNECT of an identity
 * with a cap or a quota (after its policy allowed it), one per tunnel that ends, and a heartbeat that
 * writes this gateway's true counts every {@link SYNC_INTERVAL_MS} (which also corrects any count a
 * failed call left wrong, e.g. during an outage). A crashed gateway stops heartbeating and its counts
 * expire, so they do not hold an identity's slots forever.
 */
export class SharedTunnels implements TunnelAdmission {
  private timer: TimerHandle | undefined;
  private counts: () => ReadonlyMap<string, number> = () => new Map();
  private stopped = false;

  constructor(
    private readonly store: BudgetStore,
    private readonly clock: Clock,
  ) {}

  async admit(identity: string, limits: IdentityLimits): Promise<AdmissionResult> {
    try {
      const answer = await this.store.admitTunnel({
        identity,
        maxTunnels: limits.maxTunnels,
        uploadQuota: limits.uploadQuota,
        downloadQuota: limits.downloadQuota,
      });
      switch (answer.status) {
        case 'ok':
          return { ok: true };
        case 'too_many_tunnels':
          return { ok: false, reason: 'too_many_tunnels', openTunnels: answer.openTunnels };
        case 'over_quota':
          return {
            ok: false,
            reason: 'over_quota',
            direction: answer.direction,
            retryAfterS: answer.retryAfterS,
          };
      }
    } catch (err) {
      return { ok: false, reason: 'unavailable', detail: (err as Error).message };
    }
  }

  release(identity: string): void {
    this.store.releaseTunnel(identity).catch(() => {
      // The next heartbeat writes the true count.
    });
  }

  /** Starts the heartbeat with this process's counts (the limiter's). */
  start(counts: () => ReadonlyMap<string, number>): void {
    this.counts = counts;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimer(this.beat, SYNC_INTERVAL_MS);
  }

  private readonly beat = (): void => {
    this.timer = undefined;
    this.store
      .sync(this.counts())
      .catch(() => {
        // Reported through the store's health; tried again on the next beat.
      })
      .finally(() => this.schedule());
  };
}
