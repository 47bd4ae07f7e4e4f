import {
  type Attributes,
  ROOT_CONTEXT,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import { loggedText } from '../observability/log-text.js';
import { remoteParent } from '../tracing/remote-parent.js';
import { hrTimeOf } from '../tracing/span-time.js';
import type { StagedIdGenerator } from '../tracing/staged-ids.js';
import type { SidecarSubscriber } from './tunnel-events.js';

/**
 * The sidecar's spans (service agent_gateway_sidecar), made from its tunnel events after the fact like
 * the gateway's (tracing/connect-spans.ts):
 * - `sidecar CONNECT` (client span) from the local request to the gateway's answer, with the very span id
 *   the sidecar sent in its `traceparent`, so the gateway's `gateway CONNECT` is its child; a child of
 *   the agent's own span when the agent sent a traceparent;
 * - `sidecar tunnel` from the 200 to the close, with byte counts and the close cause.
 */
export function sidecarSpanSubscriber(tracer: Tracer, ids: StagedIdGenerator): SidecarSubscriber {
  const open = new Map<string, SpanContext>();
  return {
    tunnelAnswered(e) {
      const now = hrTimeOf(performance.now());
      const attributes: Attributes = {
        dest_authority: e.authority,
        kind: e.kind,
        'http.response.status_code': e.status,
        answered_by: e.answeredBy,
      };
      if (e.identity !== null) attributes['source_identity'] = loggedText(e.identity).text;
      ids.stage(e.trace.traceId, e.trace.spanId);
      const span = tracer.startSpan(
        'sidecar CONNECT',
        { kind: SpanKind.CLIENT, startTime: hrTimeOf(e.startedAt), attributes },
        // The agent's span as the parent; a new trace (whose id the staged generator supplies) otherwise.
        remoteParent(
          e.trace.parentSpanId === undefined ? undefined : { ...e.trace, spanId: e.trace.parentSpanId },
        ),
      );
      if (!span.isRecording()) return;
      span.addEvent(e.status === 200 ? 'tunnel opened' : 'tunnel refused', { status: e.status }, now);
      if (e.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR, message: `status ${e.status}` });
      span.end(now);
      if (e.status === 200) open.set(e.trace.spanId, span.spanContext());
    },
    tunnelEnded(e) {
      const parent = open.get(e.trace.spanId);
      if (parent === undefined) return;
      open.delete(e.trace.spanId);
      const now = hrTimeOf(performance.now());
      const attributes: Attributes = {
        bytes_client_to_dest: e.bytesClientToDest,
        bytes_dest_to_client: e.bytesDestToClient,
        close_cause: e.cause,
      };
      const span = tracer.startSpan(
        'sidecar tunnel',
        { kind: SpanKind.INTERNAL, startTime: hrTimeOf(e.openedAt), attributes },
        trace.setSpanContext(ROOT_CONTEXT, parent),
      );
      span.addEvent('tunnel closed', attributes, now);
      span.end(now);
    },
  };
}
