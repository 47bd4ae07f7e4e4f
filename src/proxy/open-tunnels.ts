import type { Duplex } from 'node:stream';
import type { RateLimiter } from '../ratelimit/limiter.js';
import type { TunnelThrottle } from '../ratelimit/tunnel-throttle.js';
import type { GatewayEvents } from '../session/events.js';
import { nextTunnelId, type TunnelGrant, type TunnelSession } from '../session/tunnel-session.js';
import { type Clock, MAX_TIMER_MS, systemClock, type TimerHandle } from '../time/clock.js';
import { Tunnel, type TunnelCloseCause } from '../tunnel/tunnel.js';
import type { DialledTunnel } from './connect-flow.js';

/** One open tunnel as the operator sees it (`tunnels list`, the dashboard). */
export interface TunnelView {
  readonly session: TunnelSession;
  readonly bytesClientToDest: number;
  readonly bytesDestToClient: number;
  /** Monotonic milliseconds at which the tunnel will be closed unless a re-check extends it. */
  readonly deadlineMono: number;
  /** Some direction is held by a rate limit right now. */
  readonly throttled: boolean;
}

export interface OpenTunnelsOptions {
  readonly events: GatewayEvents;
  readonly idleTimeoutMs: number;
  /** server.max_tunnel_lifetime_s in ms; 0 = unlimited. */
  readonly maxLifetimeMs: number;
  readonly limiter?: RateLimiter;
  /** Monotonic time and timers for the deadlines (injected in tests). */
  readonly clock?: Clock;
}

/** Told when a tunnel has gone (its connection's bookkeeping). */
export type TunnelEnded = () => void;

/** One entry: the session, its pipe, its deadline. Indexed three ways (see OpenTunnels). */
class LiveTunnel {
  timer: TimerHandle | undefined;
  /** Monotonic ms when the grant's window (or the tunnel's lifetime) ends. */
  deadline = 0;
  deadlineCause: 'expired' | 'max_lifetime' = 'expired';
  validUntilMono: number;
  endsWith: TunnelGrant['endsWith'];
  throttle: TunnelThrottle | undefined;

  constructor(
    readonly session: TunnelSession,
    readonly tunnel: Tunnel,
  ) {
    this.validUntilMono = session.grant.validUntilMono;
    this.endsWith = session.grant.endsWith;
  }
}

/**
 * The set of open tunnels. It starts each one (under its identity's rate limits when a limiter is given),
 * builds its typed session, publishes `tunnelOpened` / `tunnelThrottled` / `tunnelClosed`, closes a
 * tunnel when its grant's window ends or it reaches its maximum lifetime, and answers "which tunnels does
 * this identity, permission or signing key back?" for the live check, the admin API and shutdown.
 */
export class OpenTunnels {
  private readonly live = new Map<string, LiveTunnel>();
  private readonly byIdentity = new Map<string, Set<LiveTunnel>>();
  private readonly byPermission = new Map<string, Set<LiveTunnel>>();
  private readonly bySigningKey = new Map<string, Set<LiveTunnel>>();
  private idleWaiters: Array<() => void> = [];
  private readonly clock: Clock;

  constructor(private readonly options: OpenTunnelsOptions) {
    this.clock = options.clock ?? systemClock;
  }

  get size(): number {
    return this.live.size;
  }

  /**
   * Starts the tunnel the connect flow dialled (after the 200 was sent); it now owns the upstream socket
   * and the tunnel slot. `onEnded` runs once the tunnel has gone, however it ended; `pipelined` are bytes
   * the client sent after its CONNECT head (HTTP/1.1), forwarded first.
   */
  start(client: Duplex, dialled: DialledTunnel, onEnded?: TunnelEnded, pipelined?: Buffer): TunnelSession {
    const { attempt, grant, reservation } = dialled;
    const openedAtMono = this.clock.now();
    const session: TunnelSession = {
      id: nextTunnelId(),
      // The flow only dials for a CONNECT with an identity.
      identity: attempt.identity ?? '',
      spki: attempt.spki,
      spkiFingerprint: attempt.spkiFingerprint,
      destination: dialled.destination,
      destAddr: dialled.destAddr,
      protocol: attempt.protocol,
      peerAddr: attempt.peerAddr,
      trace: attempt.trace,
      // The policy's allow is the grant (PolicyAllow extends TunnelGrant).
      grant,
      openedAt: Date.now(),
      openedAtMono,
    };
    const { events } = this.options;
    const tunnel = new Tunnel(client, dialled.upstream, {
      idleTimeoutMs: this.options.idleTimeoutMs,
      onClose: (summary) => {
        this.remove(entry);
        const throttle = entry.throttle?.close();
        reservation?.release();
        events.emit('tunnelClosed', {
          session,
          cause: summary.cause,
          reason: summary.reason,
          error: summary.error,
          bytesClientToDest: summary.bytesClientToDest,
          bytesDestToClient: summary.bytesDestToClient,
          durationMs: Math.round(this.clock.now() - openedAtMono),
          throttle,
        });
        onEnded?.();
        if (this.live.size === 0) this.notifyIdle();
      },
    });
    const entry = new LiveTunnel(session, tunnel);
    if (reservation !== undefined && this.options.limiter !== undefined) {
      entry.throttle = this.options.limiter.attach(reservation, tunnel, (direction, bucket) =>
        // Once per tunnel, not per chunk: the tunnel closed event carries the total throttled time.
        events.emit('tunnelThrottled', {
          session,
          direction,
          limit: bucket.kind,
          bytesPerSecond: bucket.bytesPerSecond,
          burstBytes: bucket.burstBytes,
        }),
      );
      tunnel.up.throttle(entry.throttle.up);
      tunnel.down.throttle(entry.throttle.down);
    }
    this.add(entry);
    events.emit('tunnelOpened', { session, attempt });
    this.arm(entry);
    if (pipelined !== undefined && pipelined.length > 0) tunnel.up.forward(pipelined);
    return session;
  }

  /** Every open tunnel with its live counters. */
  list(): TunnelView[] {
    const out: TunnelView[] = [];
    for (const entry of this.live.values()) {
      out.push({
        session: entry.session,
        bytesClientToDest: entry.tunnel.up.bytes,
        bytesDestToClient: entry.tunnel.down.bytes,
        deadlineMono: entry.deadline,
        throttled: entry.throttle !== undefined && (entry.throttle.up.held || entry.throttle.down.held),
      });
    }
    return out;
  }

  /** The sessions of every open tunnel (the live check judges them again). */
  *sessions(): IterableIterator<TunnelSession> {
    for (const entry of this.live.values()) yield entry.session;
  }

  /** Tunnels of one identity, permission or signing key, found through the index. */
  sessionsOf(key: { identity?: string; permissionId?: string; signingKeyId?: string }): TunnelSession[] {
    const set =
      key.identity !== undefined
        ? this.byIdentity.get(key.identity)
        : key.permissionId !== undefined
          ? this.byPermission.get(key.permissionId)
          : key.signingKeyId !== undefined
            ? this.bySigningKey.get(key.signingKeyId)
            : undefined;
    return set === undefined ? [] : [...set].map((e) => e.session);
  }

  /** Closes every open tunnel whose session matches; returns how many were told to close. */
  closeWhere(
    predicate: (session: TunnelSession) => boolean,
    cause: TunnelCloseCause,
    reason?: string,
  ): number {
    let closed = 0;
    for (const entry of [...this.live.values()]) {
      if (!predicate(entry.session)) continue;
      entry.tunnel.close(cause, reason);
      closed++;
    }
    return closed;
  }

  /** Closes the tunnels with these session ids (the live check's verdicts). */
  closeSessions(ids: Iterable<string>, cause: TunnelCloseCause, reason: string): number {
    let closed = 0;
    for (const id of ids) {
      const entry = this.live.get(id);
      if (entry === undefined) continue;
      entry.tunnel.close(cause, reason);
      closed++;
    }
    return closed;
  }

  /**
   * A re-check found the tunnel's rows valid until `validUntilMono` (a signer's window may have been
   * edited since admission): its deadline follows.
   */
  updateValidity(id: string, validUntilMono: number, endsWith: TunnelGrant['endsWith']): void {
    const entry = this.live.get(id);
    if (entry === undefined || (entry.validUntilMono === validUntilMono && entry.endsWith === endsWith))
      return;
    entry.validUntilMono = validUntilMono;
    entry.endsWith = endsWith;
    this.arm(entry);
  }

  /** Resolves when no tunnel is open (immediately if none is). */
  whenEmpty(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  closeAll(cause: TunnelCloseCause): void {
    for (const entry of [...this.live.values()]) entry.tunnel.close(cause);
  }

  /** (Re)arms the entry's one timer for the earlier of its grant's end and its maximum lifetime. */
  private arm(entry: LiveTunnel): void {
    if (entry.timer !== undefined) this.clock.clearTimer(entry.timer);
    const lifetimeEnd =
      this.options.maxLifetimeMs > 0
        ? entry.session.openedAtMono + this.options.maxLifetimeMs
        : Number.POSITIVE_INFINITY;
    entry.deadlineCause = lifetimeEnd < entry.validUntilMono ? 'max_lifetime' : 'expired';
    entry.deadline = Math.min(lifetimeEnd, entry.validUntilMono);
    const fire = () => {
      entry.timer = undefined;
      if (!this.live.has(entry.session.id)) return;
      const now = this.clock.now();
      // A deadline beyond the longest timer Node honours fires early: re-arm for the rest.
      if (now < entry.deadline) {
        entry.timer = this.clock.setTimer(fire, Math.min(MAX_TIMER_MS, entry.deadline - now));
        return;
      }
      if (entry.deadlineCause === 'max_lifetime') {
        entry.tunnel.close(
          'max_lifetime',
          `open for server.max_tunnel_lifetime_s (${this.options.maxLifetimeMs / 1000} s)`,
        );
      } else {
        entry.tunnel.close('expired', entry.endsWith === 'signer' ? 'signer_expired' : 'permission_expired');
      }
    };
    entry.timer = this.clock.setTimer(
      fire,
      Math.min(MAX_TIMER_MS, Math.max(0, entry.deadline - this.clock.now())),
    );
  }

  private add(entry: LiveTunnel): void {
    const { session } = entry;
    this.live.set(session.id, entry);
    addTo(this.byIdentity, session.identity, entry);
    addTo(this.byPermission, session.grant.permissionId, entry);
    addTo(this.bySigningKey, session.grant.signingKeyId, entry);
  }

  private remove(entry: LiveTunnel): void {
    const { session } = entry;
    if (entry.timer !== undefined) this.clock.clearTimer(entry.timer);
    entry.timer = undefined;
    this.live.delete(session.id);
    removeFrom(this.byIdentity, session.identity, entry);
    removeFrom(this.byPermission, session.grant.permissionId, entry);
    removeFrom(this.bySigningKey, session.grant.signingKeyId, entry);
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

function addTo(index: Map<string, Set<LiveTunnel>>, key: string, entry: LiveTunnel): void {
  let set = index.get(key);
  if (set === undefined) {
    set = new Set();
    index.set(key, set);
  }
  set.add(entry);
}

function removeFrom(index: Map<string, Set<LiveTunnel>>, key: string, entry: LiveTunnel): void {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(entry);
  if (set.size === 0) index.delete(key);
}
