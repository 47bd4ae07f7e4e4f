import type { ConnectAttempt, ConnectRejected, GatewaySubscriber, TunnelClosed } from '../session/events.js';
import type { TunnelSession } from '../session/tunnel-session.js';
import { type Clock, systemClock } from '../time/clock.js';
import { LogEvent } from './events.js';
import { LogSuppressor, sourceOf } from './log-suppression.js';
import { loggedBytes, loggedText } from './log-text.js';
import type { Logger } from './logger.js';

type Fields = Record<string, unknown>;

export interface AuditLogOptions {
  /** Refusal lines written in full per source address per 10 s (observability.deny_log_limit); 0 = all. */
  readonly refusalsPerSource: number;
  readonly clock?: Clock;
}

const SUPPRESSION_WINDOW_MS = 10_000;

/**
 * The audit trail: the first subscriber of the gateway's events, turning each into the JSON line the
 * interop contract names (`CONNECT allowed`, `CONNECT denied`, `tunnel closed`, …) with its fields.
 *
 * What an attacker controls is bounded before it is written: identities, authorities and parser
 * complaints are escaped and cut (loggedText), and refusal lines (denies, bad requests, refused
 * connections and handshakes) are rate-limited per source address with a counted summary
 * (LogSuppressor). Tunnel lines are never suppressed: a tunnel needs a signed permission.
 */
export function auditLogSubscriber(
  logger: Logger,
  options: AuditLogOptions,
): GatewaySubscriber & {
  flush(): void;
} {
  const suppressor = new LogSuppressor({
    perSource: options.refusalsPerSource,
    total: options.refusalsPerSource * 50,
    windowMs: SUPPRESSION_WINDOW_MS,
    maxSources: 4096,
    clock: options.clock ?? systemClock,
    onSummary: (s) =>
      logger.warn(
        {
          source_addr: s.source,
          suppressed: s.total,
          suppressed_by_kind: s.suppressed,
          window_ms: s.windowMs,
        },
        LogEvent.deniesSuppressed,
      ),
  });
  /** Refusals pass through here: written, or counted under their kind. */
  const refusal = (peerAddr: string, kind: string, fields: Fields, msg: string): void => {
    if (suppressor.admit(sourceOf(peerAddr), kind)) logger.info(fields, msg);
  };

  return {
    flush: () => suppressor.flush(),
    handshakeFailed(e) {
      refusal(
        e.peerAddr,
        LogEvent.tlsHandshakeFailed,
        { source_peer_addr: e.peerAddr, error: text(e.error) },
        LogEvent.tlsHandshakeFailed,
      );
    },
    connectionRefused(e) {
      const certificate = e.reason === 'no_client_certificate' || e.reason === 'bad_client_certificate';
      const msg = certificate ? LogEvent.clientCertificateRefused : LogEvent.connectionRefused;
      const fields = certificate
        ? { source_peer_addr: e.peerAddr, deny_reason: e.reason, deny_detail: text(e.detail) }
        : { source_peer_addr: e.peerAddr, reason: e.reason, detail: e.detail };
      refusal(e.peerAddr, `${msg}/${e.reason}`, fields, msg);
    },
    connectionIdle(e) {
      refusal(
        e.peerAddr,
        LogEvent.requestTimeout,
        { ...identityFields(e.identity), source_peer_addr: e.peerAddr },
        LogEvent.requestTimeout,
      );
    },
    connectRejected(e) {
      const { msg, kind, fields } = rejection(e);
      refusal(e.attempt.peerAddr, kind, fields, msg);
    },
    connectAbandoned(e) {
      refusal(
        e.attempt.peerAddr,
        LogEvent.connectAbandoned,
        { ...attemptFields(e.attempt), stage: e.stage },
        LogEvent.connectAbandoned,
      );
    },
    tunnelOpened(e) {
      logger.info(
        {
          ...sessionFields(e.session),
          policy_decision: 'allow',
          policy_cache: e.session.grant.cached ? 'hit' : undefined,
        },
        LogEvent.connectAllowed,
      );
    },
    tunnelThrottled(e) {
      logger.info(
        {
          ...sessionFields(e.session),
          direction: e.direction,
          limit: e.limit,
          bytes_per_second: e.bytesPerSecond,
          burst_bytes: e.burstBytes,
        },
        LogEvent.rateLimited,
      );
    },
    tunnelClosed(e) {
      logger[closeLevel(e)](closedFields(e), LogEvent.tunnelClosed);
    },
    registryStatus(e) {
      if (e.available) logger.info({}, LogEvent.registryAvailable);
      else logger.warn({ error: e.error }, LogEvent.registryUnavailable);
    },
    operatorAction(e) {
      logger.warn(
        {
          action: e.action,
          operator_role: e.role,
          operator_addr: e.peer,
          operator_name: e.operator,
          target: e.target,
          result: e.result,
        },
        LogEvent.operatorAction,
      );
    },
    liveCheckStatus(e) {
      if (e.healthy) logger.info({ mode: e.mode, detail: e.detail }, LogEvent.liveCheckHealthy);
      else logger.error({ mode: e.mode, detail: e.detail }, LogEvent.liveCheckUnhealthy);
    },
    quotaExhausted(e) {
      logger.warn(
        {
          ...identityFields(e.identity),
          direction: e.direction,
          quota_bytes: e.quotaBytes,
          quota_window_s: e.windowS,
          used_bytes: e.usedBytes,
          retry_after_s: Math.ceil(e.retryAfterS),
        },
        LogEvent.quotaExhausted,
      );
    },
    budgetStoreStatus(e) {
      if (e.available) logger.info({}, LogEvent.budgetStoreAvailable);
      else logger.warn({ error: e.error }, LogEvent.budgetStoreUnavailable);
    },
  };
}

/** Revocations and failed re-checks are what an operator is paged for; the rest is routine. */
function closeLevel(e: TunnelClosed): 'info' | 'warn' {
  return e.cause === 'revoked' || e.cause === 'revalidation_failed' ? 'warn' : 'info';
}

function rejection(e: ConnectRejected): { msg: string; kind: string; fields: Fields } {
  const base = attemptFields(e.attempt);
  const { reason } = e;
  switch (reason.kind) {
    case 'denied': {
      const fields: Fields = {
        ...base,
        ...grantFields(e.attempt),
        policy_decision: 'deny',
        deny_reason: reason.denyReason,
        deny_detail: e.detail === undefined ? undefined : text(e.detail),
      };
      if (e.attempt.claimedIdentity !== null) {
        const claimed = loggedBytes(e.attempt.claimedIdentity);
        fields['claimed_identity'] = claimed.text;
        fields['claimed_identity_sha256'] = claimed.sha256;
      }
      return { msg: LogEvent.connectDenied, kind: `${LogEvent.connectDenied}/${reason.denyReason}`, fields };
    }
    case 'bad_request':
      return {
        msg: LogEvent.badRequest,
        kind: LogEvent.badRequest,
        fields: { ...base, problem: optionalText(e.detail) },
      };
    case 'method_not_allowed':
      return {
        msg: LogEvent.methodNotAllowed,
        kind: LogEvent.methodNotAllowed,
        fields: { ...base, method: optionalText(String(e.facts?.['method'] ?? '')) },
      };
    case 'too_many_tunnels':
      return { msg: LogEvent.tooManyTunnels, kind: LogEvent.tooManyTunnels, fields: { ...base, ...e.facts } };
    case 'over_quota':
      return { msg: LogEvent.overQuota, kind: LogEvent.overQuota, fields: { ...base, ...e.facts } };
    case 'budget_unavailable':
      return {
        msg: LogEvent.budgetUnavailable,
        kind: LogEvent.budgetUnavailable,
        fields: { ...base, error: optionalText(e.detail) },
      };
    case 'upstream_failed':
      return {
        msg: LogEvent.tcpConnectFailed,
        kind: LogEvent.tcpConnectFailed,
        fields: {
          ...base,
          ...grantFields(e.attempt),
          ...e.facts,
          error_kind: reason.errorKind,
          error: optionalText(e.detail),
        },
      };
    case 'internal_error':
      return {
        msg: LogEvent.internalError,
        kind: LogEvent.internalError,
        fields: { ...base, error: optionalText(e.detail) },
      };
  }
}

/** The fields every line about one CONNECT carries, so an investigator can join them. */
function attemptFields(a: ConnectAttempt): Fields {
  return {
    ...connectionFields(a.identity, a.peerAddr, a.protocol, a.trace),
    // Normalized, so bounded and plain (a host of at most 253 letters, digits, '.', '-', '_', or an IPv6
    // literal): cut at MAX_LOGGED_CHARS it would lose the end of a legitimate long name.
    dest_authority: a.destination?.authority,
  };
}

/** Who, from where, over what, in which trace: the head of every line about a CONNECT or a tunnel. */
function connectionFields(
  identity: string | null,
  peerAddr: string,
  protocol: string,
  trace: ConnectAttempt['trace'],
): Fields {
  return {
    ...identityFields(identity),
    source_peer_addr: peerAddr,
    protocol,
    trace_id: trace?.traceId,
    parent_span_id: trace?.parentSpanId,
  };
}

function grantFields(a: ConnectAttempt): Fields {
  if (a.grant === undefined) return {};
  return {
    permission_id: a.grant.permissionId,
    signing_key_id: a.grant.signingKeyId,
    policy_cache: a.grant.cached ? 'hit' : undefined,
  };
}

/** Fields of every line about an open tunnel. */
function sessionFields(s: TunnelSession): Fields {
  return {
    ...connectionFields(s.identity, s.peerAddr, s.protocol, s.trace),
    dest_authority: s.destination.authority,
    dest_addr: s.destAddr,
    permission_id: s.grant.permissionId,
    signing_key_id: s.grant.signingKeyId,
    scope_id: s.grant.scopeId,
    spki_sha256: s.spkiFingerprint,
    tunnel_id: s.id,
  };
}

function closedFields(e: TunnelClosed): Fields {
  return {
    ...sessionFields(e.session),
    bytes_client_to_dest: e.bytesClientToDest,
    bytes_dest_to_client: e.bytesDestToClient,
    close_cause: e.cause,
    close_reason: e.reason,
    error: e.error,
    duration_ms: e.durationMs,
    throttled_ms: e.throttle?.throttledMs,
    throttled_ms_client_to_dest: e.throttle?.clientToDestThrottledMs,
    throttled_ms_dest_to_client: e.throttle?.destToClientThrottledMs,
    max_held_bytes: e.throttle?.maxHeldBytes,
  };
}

/** `source_identity` (only when known), escaped and cut, with the full value's hash when cut. */
function identityFields(identity: string | null): Fields {
  if (identity === null) return {};
  const logged = loggedText(identity);
  return logged.sha256 === undefined
    ? { source_identity: logged.text }
    : { source_identity: logged.text, source_identity_sha256: logged.sha256 };
}

function text(value: string): string {
  return loggedText(value).text;
}

function optionalText(value: string | undefined): string | undefined {
  return value === undefined ? undefined : text(value);
}
