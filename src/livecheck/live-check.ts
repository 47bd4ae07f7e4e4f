import type { PolicyEngine, RecheckSubject } from '../policy/decision.js';
import type { GatewayEvents, LiveCheckStatus } from '../session/events.js';
import type { TunnelGrant, TunnelSession } from '../session/tunnel-session.js';
import { type Clock, systemClock, type TimerHandle } from '../time/clock.js';
import type { TunnelCloseCause } from '../tunnel/tunnel.js';

/** What the live check needs from the set of open tunnels (proxy/open-tunnels.ts). */
export interface LiveSessions {
  sessions(): Iterable<TunnelSession>;
  closeSessions(ids: Iterable<string>, cause: TunnelCloseCause, reason: string): number;
  updateValidity(id: string, validUntilMono: number, endsWith: TunnelGrant['endsWith']): void;
}

/** The registry's change notifications, as the live check sees them (registry/change-listener.ts). */
export interface ChangeSource {
  readonly current: { readonly listening: boolean; readonly detail: string };
}

export interface LiveCheckOptions {
  readonly policy: Pick<PolicyEngine, 'recheck' | 'forgetPermissions' | 'invalidateCache' | 'setCacheGate'>;
  readonly tunnels: LiveSessions;
  readonly events: GatewayEvents;
  /** Time between the end of one periodic re-check and the start of the next (policy.revalidation_interval_ms). */
  readonly intervalMs: number;
  /** How long tunnels outlive failing re-checks (policy.revalidation_grace_s in ms; 0 = close at once). */
  readonly graceMs: number;
  readonly clock?: Clock;
}

/**
 * Smallest gap between two re-checks started by notifications: a burst of registry writes (an operator
 * revoking a hundred permissions one statement at a time) costs a few queries, not a hundred.
 */
const MIN_GAP_MS = 20;

/**
 * Keeps every open tunnel authorized for its whole life. A re-check judges all open tunnels again with
 * one batched query (the policy engine's recheck(): the same judgement as a new CONNECT) and closes each
 * one whose permission, signer or scope no longer allows it, with close cause `revoked` (or `expired`)
 * and the precise deny reason. Re-checks run:
 * - at once when the registry announces a change (NOTIFY from the agent_gateway_ext extension),
 * - whenever the listener (re)connects, because notifications sent while it was away are lost,
 * - and every `intervalMs` regardless: the backstop that also serves registries without the extension,
 *   whatever tool changed them.
 * The end of a grant's window is not waited for here: each tunnel has its own deadline (open-tunnels.ts).
 *
 * When re-checks fail (registry unreachable), tunnels live on for `graceMs` after the last one that
 * succeeded (or their own admission, if later), then close with `revalidation_failed`. The state is
 * published once per change (`liveCheckStatus`), never per check.
 *
 * The decision cache is opened only while notifications are known to arrive and the last re-check
 * succeeded: without a working revocation path, no allow is reused.
 */
export class LiveCheck {
  private readonly clock: Clock;
  private timer: TimerHandle | undefined;
  private running = false;
  /** A change was announced while a re-check ran: run again once it is done. */
  private again = false;
  private stopped = false;
  private lastStart = Number.NEGATIVE_INFINITY;
  /** When the snapshot of the last successful re-check was taken (monotonic ms). */
  private lastSuccess: number;
  private failing = false;
  private published: LiveCheckStatus | undefined;
  private lastError = '';

  constructor(
    private readonly options: LiveCheckOptions,
    private readonly changes?: ChangeSource,
  ) {
    this.clock = options.clock ?? systemClock;
    this.lastSuccess = this.clock.now();
    options.policy.setCacheGate(() => this.cacheUsable());
  }

  start(): void {
    this.schedule(this.options.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  /** The registry announced a change: forget cached allows and re-check every open tunnel now. */
  changed(): void {
    this.options.policy.invalidateCache();
    this.trigger();
  }

  /** Notifications (re)started: whatever was missed meanwhile is re-checked now. */
  listening(): void {
    this.options.policy.invalidateCache();
    this.trigger();
    this.publish();
  }

  /** Notifications stopped (the cache closes by itself through cacheUsable); tell the operator. */
  down(): void {
    this.publish();
  }

  /** Re-checks are succeeding: open tunnels are being re-validated (for readiness). */
  get healthy(): boolean {
    return !this.failing;
  }

  get mode(): LiveCheckStatus['mode'] {
    if (this.failing) return 'down';
    return this.changes?.current.listening === true ? 'listening' : 'polling';
  }

  /** Runs a re-check as soon as possible (coalesced with one in progress). */
  trigger(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    const wait = this.lastStart + MIN_GAP_MS - this.clock.now();
    this.schedule(Math.max(0, wait));
  }

  /** One re-check of every open tunnel; resolves when its verdicts have been acted on. */
  async runOnce(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    const startedAt = this.clock.now();
    this.lastStart = startedAt;
    try {
      const sessions = [...this.options.tunnels.sessions()];
      const subjects: RecheckSubject[] = sessions.map((s) => ({
        permissionId: s.grant.permissionId,
        identity: s.identity,
        spki: s.spki,
        destination: s.destination.authority,
      }));
      const result =
        subjects.length === 0
          ? ({ ok: true, verdicts: [] } as const)
          : await this.options.policy.recheck(subjects);
      if (!result.ok) {
        this.failed(result.error, sessions);
        return;
      }
      this.succeeded(startedAt);
      const revoked = new Map<string, string[]>();
      const expired = new Map<string, string[]>();
      const failedPermissions = new Set<string>();
      result.verdicts.forEach((verdict, i) => {
        const session = sessions[i]!;
        if (verdict.ok) {
          this.options.tunnels.updateValidity(session.id, verdict.validUntilMono, verdict.endsWith);
          return;
        }
        failedPermissions.add(session.grant.permissionId);
        const reason = `${verdict.reason}: ${verdict.detail}`;
        const into =
          verdict.reason === 'permission_expired' || verdict.reason === 'signer_expired' ? expired : revoked;
        const ids = into.get(reason);
        if (ids === undefined) into.set(reason, [session.id]);
        else ids.push(session.id);
      });
      this.options.policy.forgetPermissions(failedPermissions);
      for (const [reason, ids] of revoked) this.options.tunnels.closeSessions(ids, 'revoked', reason);
      for (const [reason, ids] of expired) this.options.tunnels.closeSessions(ids, 'expired', reason);
    } finally {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.trigger();
      } else {
        this.schedule(this.options.intervalMs);
      }
    }
  }

  private cacheUsable(): boolean {
    return !this.failing && this.changes?.current.listening === true;
  }

  private succeeded(startedAt: number): void {
    this.lastSuccess = startedAt;
    if (this.failing) {
      this.failing = false;
      this.publish();
    }
  }

  private failed(error: string, sessions: readonly TunnelSession[]): void {
    this.lastError = error;
    if (!this.failing) {
      this.failing = true;
      this.publish();
    }
    const now = this.clock.now();
    const stale: string[] = [];
    for (const s of sessions) {
      // Verified at its admission or by the last successful re-check, whichever is later.
      if (now - Math.max(this.lastSuccess, s.openedAtMono) >= this.options.graceMs) stale.push(s.id);
    }
    if (stale.length > 0) {
      const graceS = this.options.graceMs / 1000;
      this.options.tunnels.closeSessions(
        stale,
        'revalidation_failed',
        `the registry could not be re-checked for ${graceS} s (policy.revalidation_grace_s): ${error}`,
      );
    }
  }

  /** Publishes the state if it changed since the last time. */
  private publish(): void {
    const mode = this.mode;
    const detail =
      mode === 'down'
        ? `re-checks fail: ${this.lastError}`
        : mode === 'listening'
          ? 'registry changes are notified; re-checks succeed'
          : `re-checks succeed every ${this.options.intervalMs} ms; no change notifications (${this.changes?.current.detail ?? 'no listener'})`;
    const status: LiveCheckStatus = { healthy: mode !== 'down', mode, detail };
    if (this.published?.mode === status.mode && this.published.detail === status.detail) return;
    this.published = status;
    this.options.events.emit('liveCheckStatus', status);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer !== undefined) this.clock.clearTimer(this.timer);
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      void this.runOnce();
    }, delayMs);
  }
}
