import type { Socket } from 'node:net';
import { type Destination, DestinationError, parseDestination } from '../destination/normalize.js';
import { DialError, dialVetted } from '../egress/dial.js';
import type { EgressGuard } from '../egress/guard.js';
import { type LookupFn, vetDestination } from '../egress/resolve.js';
import type { PolicyAllow, PolicyEngine } from '../policy/engine.js';
import type { RateLimiter, ReserveResult, TunnelReservation } from '../ratelimit/limiter.js';
import type { ConnectAttempt, ConnectRejected, GatewayEvents, RejectReason } from '../session/events.js';
import type { RejectStatus } from './responses.js';

export interface ConnectFlowDeps {
  readonly policy: PolicyEngine;
  readonly guard: EgressGuard;
  readonly connectTimeoutMs: number;
  readonly lookup?: LookupFn;
  readonly events: GatewayEvents;
  /**
   * Enforces max_tunnels_per_identity and, with shared budgets, the quotas (429); the slot travels with
   * the outcome to the tunnel.
   */
  readonly limiter?: RateLimiter;
  /** Monotonic milliseconds for the phases' times (injected in tests). */
  readonly now?: () => number;
}

export interface ConnectRequest {
  readonly attempt: ConnectAttempt;
  /** True once the client has gone away; checked between the slow steps. */
  readonly cancelled: () => boolean;
}

/** Everything a front end needs to answer 200 and start the tunnel. */
export interface DialledTunnel {
  readonly kind: 'tunnel';
  readonly attempt: ConnectAttempt;
  readonly destination: Destination;
  readonly upstream: Socket;
  readonly destAddr: string;
  readonly grant: PolicyAllow;
  /** The identity's tunnel slot, now owned by whoever starts (or abandons) the tunnel. */
  readonly reservation: TunnelReservation | undefined;
}

/** A refusal: the status to answer, and for a spent quota when to try again (`Retry-After`, seconds). */
export interface RejectedConnect {
  readonly kind: 'reject';
  readonly status: RejectStatus;
  readonly retryAfterS?: number;
}

export type ConnectOutcome = DialledTunnel | RejectedConnect | { readonly kind: 'cancelled' };

/**
 * The decision for one CONNECT, the same for both protocols: normalize the authority, take the identity's
 * tunnel slot, ask the policy engine, vet the resolved address, dial it. The order matters: policy comes
 * before DNS so an agent cannot use lookups of names it may not reach as a side channel, and the 200 is
 * only sent by the caller once the upstream socket is connected. Every refusal is published here (one
 * `connectRejected`), so each front end only writes the status in its own form.
 */
export async function runConnectFlow(deps: ConnectFlowDeps, req: ConnectRequest): Promise<ConnectOutcome> {
  const { attempt } = req;
  // Nothing is spent before the rest of what the client has already sent is read. An HTTP/2 client that
  // opens a stream and resets it at once (rapid reset, CVE-2023-44487) has its RST_STREAM in the same
  // read, which Node handles after this stream's handler and its microtasks but before setImmediate:
  // such a stream is gone here, before it takes a tunnel slot, a registry query or a log line of its own.
  // Measured in bench/h2-rapid-reset.ts; for a CONNECT that stays, it costs one turn of the loop.
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (req.cancelled()) {
    deps.events.emit('connectAbandoned', { attempt, stage: 'received' });
    return { kind: 'cancelled' };
  }
  let destination: Destination;
  try {
    destination = parseDestination(attempt.rawAuthority);
  } catch (err) {
    const problem = err instanceof DestinationError ? err.message : String(err);
    return reject(deps.events, attempt, 400, { kind: 'bad_request' }, problem);
  }
  attempt.destination = destination;

  if (attempt.identity === null) {
    const reason = attempt.claimedIdentity === null ? 'no_identity' : 'malformed_identity';
    return reject(deps.events, attempt, 403, { kind: 'denied', denyReason: reason }, undefined);
  }

  // The tunnel cap comes before policy and DNS: an identity flooding CONNECTs costs no queries.
  const slot = deps.limiter?.reserve(attempt.identity);
  if (slot !== undefined && !slot.ok) return refuseSlot(deps.events, attempt, slot);
  const reservation = slot?.reservation;
  let outcome: ConnectOutcome;
  try {
    outcome = await authorizeAndDial(deps, req, attempt.identity, destination, reservation);
  } catch (err) {
    reservation?.release();
    throw err;
  }
  if (outcome.kind !== 'tunnel') {
    reservation?.release();
    if (outcome.kind === 'cancelled') deps.events.emit('connectAbandoned', { attempt, stage: 'deciding' });
    return outcome;
  }
  return { ...outcome, reservation };
}

/** A dialled tunnel the front end could not start (the client left first): free what it holds. */
export function abandonTunnel(events: GatewayEvents, outcome: DialledTunnel): void {
  outcome.upstream.destroy();
  outcome.reservation?.release();
  events.emit('connectAbandoned', { attempt: outcome.attempt, stage: 'dialled' });
}

/** Publishes a refusal and returns the outcome that tells the front end what to answer. */
export function reject(
  events: GatewayEvents,
  attempt: ConnectAttempt,
  status: ConnectRejected['status'],
  reason: RejectReason,
  detail: string | undefined,
  facts?: ConnectRejected['facts'],
): RejectedConnect {
  events.emit('connectRejected', { attempt, status, reason, detail, ...(facts ? { facts } : {}) });
  return { kind: 'reject', status };
}

/** The tunnel cap (429), a spent quota (429 with Retry-After) or an unreachable budget store (503). */
function refuseSlot(
  events: GatewayEvents,
  attempt: ConnectAttempt,
  slot: Exclude<ReserveResult, { ok: true }>,
): RejectedConnect {
  switch (slot.reason) {
    case 'too_many_tunnels':
      return reject(events, attempt, 429, { kind: 'too_many_tunnels' }, undefined, {
        max_tunnels_per_identity: slot.maxTunnels,
        open_tunnels: slot.openTunnels,
      });
    case 'over_quota': {
      // Whole seconds, at least one: Retry-After has no fractions (RFC 9110), and 0 would invite a storm.
      const retryAfterS = Math.max(1, Math.ceil(slot.retryAfterS));
      const refused = reject(events, attempt, 429, { kind: 'over_quota' }, undefined, {
        direction: slot.direction,
        retry_after_s: retryAfterS,
      });
      return { ...refused, retryAfterS };
    }
    case 'budget_unavailable':
      return reject(events, attempt, 503, { kind: 'budget_unavailable' }, slot.detail);
  }
}

const monotonic = () => performance.now();

/** Policy, then egress vetting, then the dial: the steps after the request and identity checks. */
async function authorizeAndDial(
  deps: ConnectFlowDeps,
  req: ConnectRequest,
  identity: string,
  destination: Destination,
  reservation: TunnelReservation | undefined,
): Promise<ConnectOutcome> {
  const { attempt } = req;
  const now = deps.now ?? monotonic;
  const policyPhase = { start: now(), end: 0 };
  attempt.policy = policyPhase;
  const decision = await deps.policy.decide(identity, attempt.spki, destination.authority);
  policyPhase.end = now();
  if (!decision.allowed) {
    return reject(
      deps.events,
      attempt,
      403,
      { kind: 'denied', denyReason: decision.reason },
      decision.detail,
    );
  }
  attempt.grant = decision;
  if (req.cancelled()) return { kind: 'cancelled' };

  // With shared budgets: the cap across every gateway and the quotas. After the policy, so that only an
  // identity with a permission ever reaches the budget store.
  if (reservation !== undefined && deps.limiter !== undefined) {
    const refusal = await deps.limiter.confirm(reservation);
    if (refusal !== undefined) return refuseSlot(deps.events, attempt, refusal);
    if (req.cancelled()) return { kind: 'cancelled' };
  }

  const dnsPhase = { start: now(), end: 0 };
  attempt.dns = dnsPhase;
  const vetted = await vetDestination(destination.host, destination.port, deps.guard, {
    timeoutMs: deps.connectTimeoutMs,
    ...(deps.lookup ? { lookup: deps.lookup } : {}),
  });
  dnsPhase.end = now();
  if (!vetted.ok) {
    if (vetted.kind === 'egress_refused') {
      const { refusal } = vetted;
      return reject(
        deps.events,
        attempt,
        403,
        { kind: 'denied', denyReason: 'egress_refused' },
        `${refusal.address} is ${refusal.reason} (${refusal.rule})`,
      );
    }
    return reject(
      deps.events,
      attempt,
      502,
      { kind: 'upstream_failed', errorKind: `dns_${vetted.error.kind}` },
      vetted.error.message,
    );
  }
  if (req.cancelled()) return { kind: 'cancelled' };

  const dialPhase = { start: now(), end: 0 };
  attempt.dial = dialPhase;
  let upstream: Socket;
  try {
    upstream = await dialVetted(vetted.address, destination.port, deps.connectTimeoutMs);
  } catch (err) {
    dialPhase.end = now();
    const kind = err instanceof DialError ? err.kind : 'failed';
    return reject(
      deps.events,
      attempt,
      502,
      { kind: 'upstream_failed', errorKind: kind },
      (err as Error).message,
      {
        dest_addr: vetted.address.address,
      },
    );
  }
  dialPhase.end = now();
  if (req.cancelled()) {
    upstream.destroy();
    return { kind: 'cancelled' };
  }
  return {
    kind: 'tunnel',
    attempt,
    destination,
    upstream,
    destAddr: vetted.address.address,
    grant: decision,
    reservation: undefined,
  };
}
