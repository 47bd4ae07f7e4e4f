import { type Attributes, type SpanContext, SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { loggedText } from '../observability/log-text.js';
import type { SpanRecorder } from '../tracing/recorded-spans.js';
import { remoteParent } from '../tracing/remote-parent.js';
import { hrTimeOf } from '../tracing/span-time.js';
import type { SidecarSubscriber } from './tunnel-events.js';

/**
 * The sidecar's spans (service agent_gateway_sidecar), made from its tunnel events after the fact like
 * the gateway's (tracing/connect-spans.ts):
 * - `sidecar CONNECT` (client span) from the local request to the gateway's answer, with the very span id
 *   the sidecar sent in its `traceparent`, so the gateway's `gateway CONNECT` is its child; a child of
 *   the agent's own span when the agent sent a traceparent;
 * - `sidecar tunnel` from the 200 to the close, with byte counts and the close cause.
 */
export function sidecarSpanSubscriber(recorder: SpanRecorder): SidecarSubscriber {
  const open = new Map<string, SpanContext>();
  return {
    tunnelAnswered(e) {
      const now = performance.now();
      const attributes: Attributes = {
        dest_authority: e.authority,
        kind: e.kind,
        'http.response.status_code': e.status,
        answered_by: e.answeredBy,
      };
      if (e.identity !== null) attributes['source_identity'] = loggedText(e.identity).text;
      const t = e.trace;
      const parent = remoteParent(
        t.parentSpanId === undefined ? undefined : { ...t, spanId: t.parentSpanId },
      );
      // The ids are the ones already sent to the gateway in traceparent.
      const self = recorder.root(parent, 'sidecar CONNECT', SpanKind.CLIENT, attributes, {
        traceId: t.traceId,
        spanId: t.spanId,
      });
      if (self === undefined) return;
      recorder.record({
        name: 'sidecar CONNECT',
        kind: SpanKind.CLIENT,
        context: self,
        parent,
        start: hrTimeOf(e.startedAt),
        end: hrTimeOf(now),
        attributes,
        events: [{ name: e.status === 200 ? 'tunnel opened' : 'tunnel refused', time: hrTimeOf(now) }],
        ...(e.status >= 500 ? { status: { code: SpanStatusCode.ERROR, message: `status ${e.status}` } } : {}),
      });
      if (e.status === 200) open.set(t.spanId, self);
    },
    tunnelEnded(e) {
      const parent = open.get(e.trace.spanId);
      if (parent === undefined) return;
      open.delete(e.trace.spanId);
      recorder.record({
        name: 'sidecar tunnel',
        kind: SpanKind.INTERNAL,
        context: recorder.child(parent),
        parent,
        start: hrTimeOf(e.openedAt),
        end: hrTimeOf(performance.now()),
        attributes: {
          bytes_client_to_dest: e.bytesClientToDest,
          bytes_dest_to_client: e.bytesDestToClient,
          close_cause: e.cause,
        },
      });
    },
  };
}
