import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { LogEvent } from '../observability/events.js';
import { loggedText } from '../observability/log-text.js';
import type { ConnectAttempt, ConnectRejected, GatewaySubscriber, Phase } from '../session/events.js';
import type { TunnelSession } from '../session/tunnel-session.js';
import { remoteParent } from './remote-parent.js';
import { hrTimeOf } from './span-time.js';

/**
 * The gateway's spans, made from its events after the fact: the hot path only records monotonic times on
 * the ConnectAttempt (policy, DNS, dial), and this subscriber turns them into spans with those explicit
 * start and end times (span-time.ts).
 *
 * - `gateway CONNECT` (server span), continuing the caller's traceparent/tracestate, from the request to
 *   its answer, with the decision as a span event (`CONNECT allowed`, `CONNECT denied` with deny_reason,
 *   and the other refusals under their log names). It ends at the decision, not when the tunnel closes,
 *   so a collector shows every decision within one export interval, and a gateway that dies mid-tunnel
 *   has still exported it.
 * - children `gateway policy`, `gateway dns`, `gateway dial`, one per phase that ran.
 * - `gateway tunnel`, a child of the CONNECT span from the 200 to the close, with the byte counts and
 *   the close cause as attributes and a `tunnel closed` event. A child rather than a linked root span,
 *   so that the tunnel sits in the same trace as the sidecar's and the agent's spans; OpenTelemetry
 *   allows a child to outlive its parent.
 */
export function connectSpanSubscriber(tracer: Tracer): GatewaySubscriber {
  // The CONNECT span of each open tunnel, for its `gateway tunnel` child; gone with the session.
  const tunnels = new WeakMap<TunnelSession, SpanContext>();

  return {
    connectRejected(e) {
      const now = hrTimeOf(performance.now());
      const span = connectSpan(tracer, e.attempt);
      if (!span.isRecording()) return;
      const { name, attributes, error } = rejection(e);
      span.setAttributes(attributes);
      span.addEvent(name, attributes, now);
      if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
      span.end(now);
    },
    connectAbandoned(e) {
      const now = hrTimeOf(performance.now());
      const span = connectSpan(tracer, e.attempt);
      if (!span.isRecording()) return;
      span.addEvent(LogEvent.connectAbandoned, { stage: e.stage }, now);
      span.end(now);
    },
    tunnelOpened(e) {
      // The 200 went out when the tunnel was opened: the decision's end and the tunnel's start.
      const now = hrTimeOf(e.session.openedAtMono);
      const span = connectSpan(tracer, e.attempt);
      if (!span.isRecording()) return;
      const s = e.session;
      const attributes: Attributes = {
        policy_decision: 'allow',
        tunnel_id: s.id,
        permission_id: s.grant.permissionId,
        signing_key_id: s.grant.signingKeyId,
        scope_id: s.grant.scopeId,
        dest_addr: s.destAddr,
        'http.response.status_code': 200,
      };
      if (s.grant.cached) attributes['policy_cache'] = 'hit';
      span.setAttributes(attributes);
      span.addEvent(LogEvent.connectAllowed, attributes, now);
      span.end(now);
      tunnels.set(s, span.spanContext());
    },
    tunnelClosed(e) {
      const parent = tunnels.get(e.session);
      if (parent === undefined) return;
      tunnels.delete(e.session);
      const now = hrTimeOf(performance.now());
      const attributes: Attributes = {
        tunnel_id: e.session.id,
        bytes_client_to_dest: e.bytesClientToDest,
        bytes_dest_to_client: e.bytesDestToClient,
        close_cause: e.cause,
        duration_ms: e.durationMs,
      };
      if (e.reason !== undefined) attributes['close_reason'] = text(e.reason);
      if (e.throttle !== undefined) attributes['throttled_ms'] = e.throttle.throttledMs;
      const span = tracer.startSpan(
        'gateway tunnel',
        { kind: SpanKind.INTERNAL, startTime: hrTimeOf(e.session.openedAtMono), attributes },
        trace.setSpanContext(ROOT_CONTEXT, parent),
      );
      span.addEvent(LogEvent.tunnelClosed, attributes, now);
      if (e.cause === 'client_error' || e.cause === 'dest_error') {
        span.setStatus({
          code: SpanStatusCode.ERROR,
          message: e.error === undefined ? e.cause : text(e.error),
        });
      }
      span.end(now);
    },
  };
}

/** The CONNECT span and its phase children; ended by the caller once the outcome is added. */
function connectSpan(tracer: Tracer, a: ConnectAttempt): Span {
  const attributes: Attributes = { source_peer_addr: a.peerAddr, protocol: a.protocol };
  if (a.identity !== null) attributes['source_identity'] = text(a.identity);
  if (a.destination !== undefined) attributes['dest_authority'] = a.destination.authority;
  const span = tracer.startSpan(
    'gateway CONNECT',
    { kind: SpanKind.SERVER, startTime: hrTimeOf(a.startedAt), attributes },
    remoteParent(a.trace === undefined ? undefined : { ...a.trace, spanId: a.trace.parentSpanId }),
  );
  if (!span.isRecording()) return span;
  const parent = trace.setSpan(ROOT_CONTEXT, span);
  child(tracer, parent, 'gateway policy', a.policy, a.grant?.cached ? { policy_cache: 'hit' } : undefined);
  child(tracer, parent, 'gateway dns', a.dns, undefined);
  child(tracer, parent, 'gateway dial', a.dial, undefined);
  return span;
}

function child(
  tracer: Tracer,
  parent: Context,
  name: string,
  phase: Phase | undefined,
  attributes?: Attributes,
) {
  // A phase the client cut short (it left) has no end.
  if (phase === undefined || phase.end <= 0 || phase.end < phase.start) return;
  tracer
    .startSpan(
      name,
      { kind: SpanKind.INTERNAL, startTime: hrTimeOf(phase.start), ...(attributes ? { attributes } : {}) },
      parent,
    )
    .end(hrTimeOf(phase.end));
}

function rejection(e: ConnectRejected): { name: string; attributes: Attributes; error: string | undefined } {
  const status = { 'http.response.status_code': e.status };
  const { reason } = e;
  switch (reason.kind) {
    case 'denied':
      return {
        name: LogEvent.connectDenied,
        attributes: { ...status, policy_decision: 'deny', deny_reason: reason.denyReason },
        error: undefined,
      };
    case 'bad_request':
      return { name: LogEvent.badRequest, attributes: status, error: undefined };
    case 'method_not_allowed':
      return { name: LogEvent.methodNotAllowed, attributes: status, error: undefined };
    case 'too_many_tunnels':
    case 'over_quota':
      return { name: LogEvent.tooManyTunnels, attributes: status, error: undefined };
    case 'upstream_failed':
      return {
        name: LogEvent.tcpConnectFailed,
        attributes: { ...status, error_kind: reason.errorKind },
        error: reason.errorKind,
      };
    case 'internal_error':
      return { name: LogEvent.internalError, attributes: status, error: 'internal error' };
  }
}

/** Attacker-controlled text in a span, escaped and cut as in the log. */
function text(value: string): string {
  return loggedText(value).text;
}
