import type { Socket } from 'node:net';
import { type Destination, DestinationError, parseDestination } from '../destination/normalize.js';
import { DialError, dialVetted } from '../egress/dial.js';
import type { EgressGuard } from '../egress/guard.js';
import { type LookupFn, vetDestination } from '../egress/resolve.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { TraceContext } from '../observability/traceparent.js';
import type { PolicyEngine } from '../policy/engine.js';
import type { RateLimiter, TunnelReservation } from '../ratelimit/limiter.js';
import type { ConnectionInfo } from './connection-info.js';
import type { RejectStatus } from './responses.js';

export interface ConnectFlowDeps {
  readonly policy: PolicyEngine;
  readonly guard: EgressGuard;
  readonly connectTimeoutMs: number;
  readonly lookup?: LookupFn;
  readonly logger: Logger;
  /** Enforces max_tunnels_per_identity (429); the tunnel's slot is bound to its upstream socket. */
  readonly limiter?: RateLimiter;
}

export interface ConnectRequest {
  readonly info: ConnectionInfo;
  /** The authority exactly as the client sent it (HTTP/1.1 request target or HTTP/2 :authority). */
  readonly rawAuthority: string;
  readonly protocol: 'HTTP/1.1' | 'HTTP/2';
  readonly trace: TraceContext | undefined;
  /** True once the client has gone away; checked between the slow steps. */
  readonly cancelled: () => boolean;
}

/** Log fields shared by every event about one CONNECT, so an investigator can join them. */
export type TunnelLogFields = Record<string, string | number | undefined>;

export type ConnectOutcome =
  | {
      readonly kind: 'tunnel';
      readonly upstream: Socket;
      readonly fields: TunnelLogFields;
      /** The identity's tunnel slot, now owned by whoever starts (or abandons) the tunnel. */
      readonly reservation: TunnelReservation | undefined;
    }
  | { readonly kind: 'reject'; readonly status: RejectStatus }
  | { readonly kind: 'cancelled' };

/**
 * The decision for one CONNECT, the same for both protocols: normalize the authority, ask the
 * policy engine, vet the resolved address, dial it. The order matters: policy comes before DNS so
 * an agent cannot use lookups of names it may not reach as a side channel, and the 200 is only
 * sent by the caller once the upstream socket is connected.
 */
export async function runConnectFlow(deps: ConnectFlowDeps, req: ConnectRequest): Promise<ConnectOutcome> {
  const { info } = req;
  const { logger } = deps;
  const fields: TunnelLogFields = {
    source_identity: info.identity ?? undefined,
    source_peer_addr: info.peerAddr,
    protocol: req.protocol,
    trace_id: req.trace?.traceId,
    parent_span_id: req.trace?.parentSpanId,
  };

  let destination: Destination;
  try {
    destination = parseDestination(req.rawAuthority);
  } catch (err) {
    const problem = err instanceof DestinationError ? err.message : String(err);
    logger.info({ ...fields, problem }, LogEvent.badRequest);
    return { kind: 'reject', status: 400 };
  }
  fields['dest_authority'] = destination.authority;

  if (info.identity === null) {
    const reason = info.identityProblem === 'malformed' ? 'malformed_identity' : 'no_identity';
    logger.info({ ...fields, policy_decision: 'deny', deny_reason: reason }, LogEvent.connectDenied);
    return { kind: 'reject', status: 403 };
  }

  // The tunnel cap comes before policy and DNS: an identity flooding CONNECTs costs no queries.
  const slot = deps.limiter?.reserve(info.identity);
  if (slot !== undefined && !slot.ok) {
    logger.info(
      { ...fields, max_tunnels_per_identity: slot.maxTunnels, open_tunnels: slot.openTunnels },
      LogEvent.tooManyTunnels,
    );
    return { kind: 'reject', status: 429 };
  }
  const reservation = slot?.reservation;
  let outcome: ConnectOutcome;
  try {
    outcome = await authorizeAndDial(deps, req, info.identity, destination, fields);
  } catch (err) {
    reservation?.release();
    throw err;
  }
  if (outcome.kind !== 'tunnel') {
    reservation?.release();
    return outcome;
  }
  return { ...outcome, reservation };
}

/** A dialled tunnel the front end could not start (the client left first): free what it holds. */
export function abandonTunnel(outcome: Extract<ConnectOutcome, { kind: 'tunnel' }>): void {
  outcome.upstream.destroy();
  outcome.reservation?.release();
}

/** Policy, then egress vetting, then the dial: the steps after the request and identity checks. */
async function authorizeAndDial(
  deps: ConnectFlowDeps,
  req: ConnectRequest,
  identity: string,
  destination: Destination,
  fields: TunnelLogFields,
): Promise<ConnectOutcome> {
  const { info } = req;
  const { logger } = deps;
  const decision = await deps.policy.decide(identity, info.spki, destination.authority);
  if (!decision.allowed) {
    logger.info(
      { ...fields, policy_decision: 'deny', deny_reason: decision.reason, deny_detail: decision.detail },
      LogEvent.connectDenied,
    );
    return { kind: 'reject', status: 403 };
  }
  fields['permission_id'] = decision.permissionId;
  // An investigator must be able to tell an allow that was reused (policy.decision_cache_ms) from a query.
  if (decision.cached) fields['policy_cache'] = 'hit';
  fields['signing_key_id'] = decision.signingKeyId;
  if (req.cancelled()) return { kind: 'cancelled' };

  const vetted = await vetDestination(destination.host, destination.port, deps.guard, {
    timeoutMs: deps.connectTimeoutMs,
    ...(deps.lookup ? { lookup: deps.lookup } : {}),
  });
  if (!vetted.ok) {
    if (vetted.kind === 'egress_refused') {
      logger.info(
        {
          ...fields,
          policy_decision: 'deny',
          deny_reason: 'egress_refused',
          deny_detail: `${vetted.refusal.address} is ${vetted.refusal.reason} (${vetted.refusal.rule})`,
        },
        LogEvent.connectDenied,
      );
      return { kind: 'reject', status: 403 };
    }
    logger.info(
      { ...fields, error_kind: `dns_${vetted.error.kind}`, error: vetted.error.message },
      LogEvent.tcpConnectFailed,
    );
    return { kind: 'reject', status: 502 };
  }
  if (req.cancelled()) return { kind: 'cancelled' };

  let upstream: Socket;
  try {
    upstream = await dialVetted(vetted.address, destination.port, deps.connectTimeoutMs);
  } catch (err) {
    const kind = err instanceof DialError ? err.kind : 'failed';
    logger.info(
      { ...fields, dest_addr: vetted.address.address, error_kind: kind, error: (err as Error).message },
      LogEvent.tcpConnectFailed,
    );
    return { kind: 'reject', status: 502 };
  }
  if (req.cancelled()) {
    upstream.destroy();
    return { kind: 'cancelled' };
  }
  fields['dest_addr'] = vetted.address.address;
  logger.info({ ...fields, policy_decision: 'allow' }, LogEvent.connectAllowed);
  return { kind: 'tunnel', upstream, fields, reservation: undefined };
}
