import {
  type BucketLimit,
  type BucketSpec,
  bytesLimited,
  downloadSpec,
  type IdentityLimits,
  limitsFor,
  type RateLimitSettings,
  uploadSpec,
} from '../config/rate-limit.js';
import { type Clock, systemClock, type TimerHandle } from '../time/clock.js';
import { type Bucket, type BucketKind, TokenBucket } from './bucket.js';
import type { Throttleable } from './direction.js';
import { type FirstThrottleHandler, TunnelThrottle } from './tunnel-throttle.js';

/** An identity's buckets and its count of tunnels (open ones and CONNECTs still being decided). */
interface IdentityState {
  readonly identity: string;
  limits: IdentityLimits;
  readonly upload: Bucket;
  readonly download: Bucket;
  tunnels: number;
}

export type ReserveResult =
  | { readonly ok: true; readonly reservation: TunnelReservation }
  | {
      readonly ok: false;
      readonly reason: 'too_many_tunnels';
      readonly maxTunnels: number;
      readonly openTunnels: number;
    }
  /** A quota is spent; `retryAfterS` is when enough of its window will have passed. */
  | {
      readonly ok: false;
      readonly reason: 'over_quota';
      readonly direction: 'upload' | 'download';
      readonly retryAfterS: number;
    }
  /** The shared budget store could not be asked, and this identity's bytes are limited: fail closed. */
  | { readonly ok: false; readonly reason: 'budget_unavailable'; readonly detail: string };

/**
 * Where buckets come from: local time (the default) or leases from the shared store (budget/). The
 * limiter owns their lifetime either way.
 */
export interface BucketFactory {
  identityBucket(
    kind: Extract<BucketKind, 'identity_upload' | 'identity_download'>,
    identity: string,
    spec: BucketSpec,
  ): Bucket;
  totalBucket(limit: BucketLimit): Bucket;
}

/** Buckets refilled by this process's clock: `[rate_limit] shared = false`. */
export function localBuckets(clock: Clock): BucketFactory {
  return {
    identityBucket: (kind, _identity, spec) => new TokenBucket(kind, spec, clock),
    totalBucket: (limit) => new TokenBucket('total_upload', limit, clock),
  };
}

/** What the shared store says about a new tunnel of an identity (budget/shared-tunnels.ts). */
export type AdmissionResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'too_many_tunnels'; readonly openTunnels: number }
  | {
      readonly ok: false;
      readonly reason: 'over_quota';
      readonly direction: 'upload' | 'download';
      readonly retryAfterS: number;
    }
  | { readonly ok: false; readonly reason: 'unavailable'; readonly detail: string };

/** The tunnel cap and quota check across every gateway process (`shared = true`). */
export interface TunnelAdmission {
  admit(identity: string, limits: IdentityLimits): Promise<AdmissionResult>;
  /** A tunnel that `admit` counted is gone. */
  release(identity: string): void;
}

export interface RateLimiterOptions {
  readonly buckets?: BucketFactory;
  readonly admission?: TunnelAdmission;
}

/**
 * One slot under an identity's `max_tunnels_per_identity`, taken when its CONNECT starts so that a
 * burst of parallel CONNECTs cannot overshoot the cap, and given back exactly once.
 */
export class TunnelReservation {
  private released = false;
  /** Counted by the shared store too, so its release is reported there. */
  shared = false;

  constructor(
    /** @internal */ readonly state: IdentityState,
    private readonly onRelease: (reservation: TunnelReservation) => void,
  ) {}

  get identity(): string {
    return this.state.identity;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this);
  }
}

/**
 * How often identities without tunnels are checked for a full bucket. Their number is bounded by the
 * identities that had a tunnel in the last few refill periods, so an infrequent walk is enough.
 */
const SWEEP_INTERVAL_MS = 10_000;

/**
 * The gateway's rate limits: per identity, an upload and a download bucket shared by all its tunnels
 * on every connection and protocol, one upload bucket across all identities, and the concurrent
 * tunnel cap (checked here, and across gateways by the shared admission when there is one). Buckets live
 * as long as the identity has tunnels and are then forgotten once refilled, which bounds the map without
 * ever handing a reconnecting identity a fresh burst it would not have had.
 */
export class RateLimiter {
  private settings: RateLimitSettings;
  private readonly states = new Map<string, IdentityState>();
  /** Identities with no tunnels whose buckets were not yet full when their last tunnel closed. */
  private readonly idle = new Set<IdentityState>();
  private readonly total: Bucket;
  private readonly buckets: BucketFactory;
  private readonly admission: TunnelAdmission | undefined;
  private sweepTimer: TimerHandle | undefined;

  constructor(
    settings: RateLimitSettings,
    private readonly clock: Clock = systemClock,
    options: RateLimiterOptions = {},
  ) {
    this.settings = settings;
    this.buckets = options.buckets ?? localBuckets(clock);
    this.admission = options.admission;
    this.total = this.buckets.totalBucket(settings.total);
  }

  /** Identities currently tracked (for tests and diagnostics). */
  get trackedIdentities(): number {
    return this.states.size;
  }

  /** Tunnels (open or being decided) per identity in this process, for the shared store's sync. */
  tunnelCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const state of this.states.values())
      if (state.tunnels > 0) counts.set(state.identity, state.tunnels);
    return counts;
  }

  /** Takes a tunnel slot for `identity` in this process, or says why not (its cap is reached here). */
  reserve(identity: string): ReserveResult {
    const state = this.stateOf(identity);
    const max = state.limits.maxTunnels;
    if (max > 0 && state.tunnels >= max) {
      return { ok: false, reason: 'too_many_tunnels', maxTunnels: max, openTunnels: state.tunnels };
    }
    state.tunnels++;
    this.idle.delete(state);
    return { ok: true, reservation: new TunnelReservation(state, this.unreserve) };
  }

  /**
   * The check across every gateway, once the policy has allowed the CONNECT (so that only identities with
   * a permission ever reach the shared store): the tunnel cap and the quotas. Undefined when the tunnel may
   * go ahead. When the store cannot be asked, an identity whose bytes are limited is refused (fail
   * closed); one with only a tunnel cap keeps this process's cap, which `reserve` already checked.
   */
  async confirm(reservation: TunnelReservation): Promise<Exclude<ReserveResult, { ok: true }> | undefined> {
    if (this.admission === undefined) return undefined;
    const limits = reservation.state.limits;
    if (limits.maxTunnels === 0 && limits.uploadQuota.bytes === 0 && limits.downloadQuota.bytes === 0) {
      return undefined;
    }
    const result = await this.admission.admit(reservation.identity, limits);
    if (result.ok) {
      reservation.shared = true;
      return undefined;
    }
    switch (result.reason) {
      case 'unavailable':
        return bytesLimited(limits)
          ? { ok: false, reason: 'budget_unavailable', detail: result.detail }
          : undefined;
      case 'too_many_tunnels':
        return {
          ok: false,
          reason: 'too_many_tunnels',
          maxTunnels: limits.maxTunnels,
          openTunnels: result.openTunnels,
        };
      case 'over_quota':
        return result;
    }
  }

  /** Puts a tunnel's two directions under its identity's buckets (and upload under the total). */
  attach(
    reservation: TunnelReservation,
    relays: { readonly up: Throttleable; readonly down: Throttleable },
    onFirstThrottle: FirstThrottleHandler,
  ): TunnelThrottle {
    const { state } = reservation;
    return new TunnelThrottle(
      relays,
      { upload: [state.upload, this.total], download: [state.download] },
      this.clock,
      onFirstThrottle,
    );
  }

  /** The upload limits a tunnel of `identity` passes (its own and the all-identity one). */
  uploadLimitsOf(identity: string): readonly BucketLimit[] {
    return [limitsFor(this.settings, identity).upload, this.settings.total];
  }

  /** New settings (config reload): applied in place to every bucket, so running tunnels follow them. */
  update(settings: RateLimitSettings): void {
    this.settings = settings;
    this.total.reconfigure(settings.total);
    for (const state of this.states.values()) {
      state.limits = limitsFor(settings, state.identity);
      state.upload.reconfigure(uploadSpec(state.limits));
      state.download.reconfigure(downloadSpec(state.limits));
    }
  }

  /** Stops the sweep timer and hands back what the buckets hold (gateway shutdown). */
  stop(): void {
    if (this.sweepTimer !== undefined) this.clock.clearTimer(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const state of this.states.values()) {
      state.upload.close();
      state.download.close();
    }
    this.total.close();
  }

  private stateOf(identity: string): IdentityState {
    let state = this.states.get(identity);
    if (state === undefined) {
      const limits = limitsFor(this.settings, identity);
      state = {
        identity,
        limits,
        upload: this.buckets.identityBucket('identity_upload', identity, uploadSpec(limits)),
        download: this.buckets.identityBucket('identity_download', identity, downloadSpec(limits)),
        tunnels: 0,
      };
      this.states.set(identity, state);
    }
    return state;
  }

  private readonly unreserve = (reservation: TunnelReservation): void => {
    const { state } = reservation;
    state.tunnels--;
    if (reservation.shared) this.admission?.release(state.identity);
    this.maybeForget(state);
  };

  private maybeForget(state: IdentityState): void {
    if (state.tunnels > 0) return;
    if (state.upload.isIdleAndFull() && state.download.isIdleAndFull()) {
      this.states.delete(state.identity);
      this.idle.delete(state);
      state.upload.close();
      state.download.close();
      return;
    }
    this.idle.add(state);
    this.sweepTimer ??= this.clock.setTimer(this.sweep, SWEEP_INTERVAL_MS);
  }

  private readonly sweep = (): void => {
    this.sweepTimer = undefined;
    for (const state of [...this.idle]) this.maybeForget(state);
  };
}
