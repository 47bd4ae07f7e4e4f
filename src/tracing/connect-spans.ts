import { type Attributes, type SpanContext, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import type { TimedEvent } from '@opentelemetry/sdk-trace';
import { LogEvent } from '../observability/events.js';
import { loggedText } from '../observability/log-text.js';
import type {
  ConnectAttempt,
  ConnectRejected,
  GatewaySubscriber,
  Phase,
  TunnelClosed,
} from '../session/events.js';
import type { TunnelSession } from '../session/tunnel-session.js';
import type { SpanRecorder } from './recorded-spans.js';
import { remoteParent } from './remote-parent.js';
import { hrTimeOf } from './span-time.js';

/**
 * The gateway's spans, made from its events after the fact: the hot path only records monotonic times on
 * the ConnectAttempt (policy, DNS, dial), and this subscriber turns them into finished spans with those
 * start and end times (recorded-spans.ts, span-time.ts).
 *
 * - `gateway CONNECT` (server span), continuing the caller's traceparent/tracestate, from the request to
 *   its answer, with the outcome as attributes and the decision as a span event (`CONNECT allowed`,
 *   `CONNECT denied` with deny_reason, and the other refusals under their log names). It ends at the
 *   decision, not when the tunnel closes, so a collector shows every decision within one export
 *   interval, and a gateway that dies mid-tunnel has still exported it.
 * - children `gateway policy`, `gateway dns`, `gateway dial`, one per phase that ran.
 * - `gateway tunnel`, a child of the CONNECT span from the 200 to the close, with the `tunnel closed`
 *   line's fields (byte counts, close cause, who and where) and that event at its end. The span events
 *   carry the interop log events' names, as the original gateway's spans do, so a collector that reads
 *   decisions from span events sees the same ones as the log. A child rather than a linked root span, so
 *   that the tunnel sits in the same trace as the sidecar's and the agent's spans; OpenTelemetry allows a
 *   child to outlive its parent.
 */
export function connectSpanSubscriber(
  recorder: SpanRecorder,
  /** A span that could not be built (reported once; the gateway is never affected). */
  onError: (error: unknown) => void = () => {},
): GatewaySubscriber {
  // The CONNECT span of each open tunnel, for its `gateway tunnel` child; gone with the session.
  const tunnels = new WeakMap<TunnelSession, SpanContext>();
  const later = deferred(onError);

  const connect = (
    a: ConnectAttempt,
    outcome: Attributes,
    end: number,
    event: TimedEvent,
    error?: string,
  ) => {
    const attributes: Attributes = { ...outcome, source_peer_addr: a.peerAddr, protocol: a.protocol };
    if (a.identity !== null) attributes['source_identity'] = text(a.identity);
    if (a.destination !== undefined) attributes['dest_authority'] = a.destination.authority;
    const parent = remoteParent(
      a.trace === undefined ? undefined : { ...a.trace, spanId: a.trace.parentSpanId },
    );
    const self = recorder.root(parent, 'gateway CONNECT', SpanKind.SERVER, attributes);
    if (self === undefined) return undefined;
    recorder.record({
      name: 'gateway CONNECT',
      kind: SpanKind.SERVER,
      context: self,
      parent,
      start: hrTimeOf(a.startedAt),
      end: hrTimeOf(end),
      attributes,
      events: [event],
      ...(error === undefined ? {} : { status: { code: SpanStatusCode.ERROR, message: error } }),
    });
    phase(self, 'gateway policy', a.policy, a.grant?.cached ? { policy_cache: 'hit' } : {});
    phase(self, 'gateway dns', a.dns, {});
    phase(self, 'gateway dial', a.dial, {});
    return self;
  };
  const phase = (parent: SpanContext, name: string, p: Phase | undefined, attributes: Attributes) => {
    // A phase the client cut short (it left) has no end.
    if (p === undefined || p.end <= 0 || p.end < p.start) return;
    recorder.record({
      name,
      kind: SpanKind.INTERNAL,
      context: recorder.child(parent),
      parent,
      start: hrTimeOf(p.start),
      end: hrTimeOf(p.end),
      attributes,
    });
  };

  const tunnelSpan = (e: TunnelClosed, now: number): void => {
    const parent = tunnels.get(e.session);
    if (parent === undefined) return;
    tunnels.delete(e.session);
    const s = e.session;
    // The `tunnel closed` log line's fields: a collector that turns span events back into those lines
    // (the dashboard's OTLP ingest does) gets the same record from the span as from the log.
    const attributes: Attributes = {
      tunnel_id: s.id,
      source_identity: text(s.identity),
      dest_authority: s.destination.authority,
      protocol: s.protocol,
      permission_id: s.grant.permissionId,
      signing_key_id: s.grant.signingKeyId,
      bytes_client_to_dest: e.bytesClientToDest,
      bytes_dest_to_client: e.bytesDestToClient,
      close_cause: e.cause,
      duration_ms: e.durationMs,
    };
    if (e.reason !== undefined) attributes['close_reason'] = text(e.reason);
    if (e.throttle !== undefined) attributes['throttled_ms'] = e.throttle.throttledMs;
    const failed = e.cause === 'client_error' || e.cause === 'dest_error';
    recorder.record({
      name: 'gateway tunnel',
      kind: SpanKind.INTERNAL,
      context: recorder.child(parent),
      parent,
      start: hrTimeOf(s.openedAtMono),
      end: hrTimeOf(now),
      attributes,
      events: [{ name: LogEvent.tunnelClosed, time: hrTimeOf(now) }],
      ...(failed
        ? { status: { code: SpanStatusCode.ERROR, message: e.error === undefined ? e.cause : text(e.error) } }
        : {}),
    });
  };

  return {
    connectRejected(e) {
      const now = performance.now();
      later(() => {
        const { name, attributes, error } = rejection(e);
        const reason: Attributes | undefined =
          e.reason.kind === 'denied' ? { deny_reason: e.reason.denyReason } : undefined;
        if (reason !== undefined && e.detail !== undefined) reason['deny_detail'] = text(e.detail);
        connect(e.attempt, attributes, now, eventAt(name, now, reason), error);
      });
    },
    connectAbandoned(e) {
      const now = performance.now();
      later(() =>
        connect(e.attempt, { abandoned_stage: e.stage }, now, eventAt(LogEvent.connectAbandoned, now)),
      );
    },
    tunnelOpened(e) {
      later(() => {
        const s = e.session;
        // The `CONNECT allowed` line's identifying fields (the rest, e.g. the key's fingerprint, stays in it).
        const attributes: Attributes = {
          policy_decision: 'allow',
          tunnel_id: s.id,
          permission_id: s.grant.permissionId,
          signing_key_id: s.grant.signingKeyId,
          'http.response.status_code': 200,
        };
        if (s.grant.cached) attributes['policy_cache'] = 'hit';
        // The 200 went out when the tunnel was opened: the decision's end and the tunnel's start.
        const end = s.openedAtMono;
        const self = connect(e.attempt, attributes, end, eventAt(LogEvent.connectAllowed, end));
        if (self !== undefined) tunnels.set(s, self);
      });
    },
    tunnelClosed(e) {
      const now = performance.now();
      later(() => tunnelSpan(e, now));
    },
  };
}

/**
 * Runs span building after the current turn (setImmediate), in publication order: the subscriber is
 * called inside the CONNECT's transition, and the 200 the client waits for is flushed only once that turn
 * ends. Times are taken before deferring; the events' data does not change afterwards. Out of the event
 * seam's reach, a failure is caught here: it must never become an uncaught exception of the gateway.
 */
function deferred(onError: (error: unknown) => void): (work: () => void) => void {
  let queue: Array<() => void> = [];
  let reported = false;
  const drain = () => {
    const run = queue;
    queue = [];
    for (const work of run) {
      try {
        work();
      } catch (error) {
        if (!reported) onError(error);
        reported = true;
      }
    }
  };
  return (work) => {
    if (queue.push(work) === 1) setImmediate(drain);
  };
}

function eventAt(name: string, monotonicMs: number, attributes?: Attributes): TimedEvent {
  return attributes === undefined
    ? { name, time: hrTimeOf(monotonicMs) }
    : { name, time: hrTimeOf(monotonicMs), attributes };
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
    case 'budget_unavailable':
      return { name: LogEvent.budgetUnavailable, attributes: status, error: 'budget store unavailable' };
    case 'internal_error':
      return { name: LogEvent.internalError, attributes: status, error: 'internal error' };
  }
}

/** Attacker-controlled text in a span, escaped and cut as in the log. */
function text(value: string): string {
  return loggedText(value).text;
}
