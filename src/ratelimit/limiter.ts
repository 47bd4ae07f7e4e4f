import { type Clock, systemClock, type TimerHandle } from '../time/clock.js';
import { TokenBucket } from './bucket.js';
import type { Throttleable } from './direction.js';
import { type BucketLimit, type IdentityLimits, limitsFor, type RateLimitSettings } from './settings.js';
import { type FirstThrottleHandler, TunnelThrottle } from './tunnel-throttle.js';

/** An identity's buckets and its count of tunnels (open ones and CONNECTs still being decided). */
interface IdentityState {
  readonly identity: string;
  limits: IdentityLimits;
  readonly upload: TokenBucket;
  readonly download: TokenBucket;
  tunnels: number;
}

export type ReserveResult =
  | { readonly ok: true; readonly reservation: TunnelReservation }
  | { readonly ok: false; readonly maxTunnels: number; readonly openTunnels: number };

/**
 * One slot under an identity's `max_tunnels_per_identity`, taken when its CONNECT starts so that a
 * burst of parallel CONNECTs cannot overshoot the cap, and given back exactly once.
 */
export class TunnelReservation {
  private released = false;

  constructor(
    /** @internal */ readonly state: IdentityState,
    private readonly onRelease: (state: IdentityState) => void,
  ) {}

  get identity(): string {
    return this.state.identity;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease(this.state);
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
 * tunnel cap. Buckets live as long as the identity has tunnels and are then forgotten once refilled,
 * which bounds the map without ever handing a reconnecting identity a fresh burst it would not have had.
 */
export class RateLimiter {
  private settings: RateLimitSettings;
  private readonly states = new Map<string, IdentityState>();
  /** Identities with no tunnels whose buckets were not yet full when their last tunnel closed. */
  private readonly idle = new Set<IdentityState>();
  private readonly total: TokenBucket;
  private sweepTimer: TimerHandle | undefined;

  constructor(
    settings: RateLimitSettings,
    private readonly clock: Clock = systemClock,
  ) {
    this.settings = settings;
    this.total = new TokenBucket('total_upload', settings.total, clock);
  }

  /** Identities currently tracked (for tests and diagnostics). */
  get trackedIdentities(): number {
    return this.states.size;
  }

  /** Takes a tunnel slot for `identity`, or says why not (its max_tunnels_per_identity is reached). */
  reserve(identity: string): ReserveResult {
    const state = this.stateOf(identity);
    const max = state.limits.maxTunnels;
    if (max > 0 && state.tunnels >= max) {
      return { ok: false, maxTunnels: max, openTunnels: state.tunnels };
    }
    state.tunnels++;
    this.idle.delete(state);
    return { ok: true, reservation: new TunnelReservation(state, this.unreserve) };
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
      state.upload.reconfigure(state.limits.upload);
      state.download.reconfigure(state.limits.download);
    }
  }

  /** Stops the sweep timer (gateway shutdown). */
  stop(): void {
    if (this.sweepTimer !== undefined) this.clock.clearTimer(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  private stateOf(identity: string): IdentityState {
    let state = this.states.get(identity);
    if (state === undefined) {
      const limits = limitsFor(this.settings, identity);
      state = {
        identity,
        limits,
        upload: new TokenBucket('identity_upload', limits.upload, this.clock),
        download: new TokenBucket('identity_download', limits.download, this.clock),
        tunnels: 0,
      };
      this.states.set(identity, state);
    }
    return state;
  }

  private readonly unreserve = (state: IdentityState): void => {
    state.tunnels--;
    this.maybeForget(state);
  };

  private maybeForget(state: IdentityState): void {
    if (state.tunnels > 0) return;
    if (state.upload.isIdleAndFull() && state.download.isIdleAndFull()) {
      this.states.delete(state.identity);
      this.idle.delete(state);
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
