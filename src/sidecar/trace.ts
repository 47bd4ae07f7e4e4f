import { randomBytes } from 'node:crypto';
import { formatTraceparent, parseTraceContext, TRACE_FLAG_SAMPLED } from '../tracecontext/traceparent.js';

/**
 * One W3C trace context per tunnel. When the local client already sent a `traceparent` (an
 * instrumented agent), the tunnel joins that trace as a child span, keeping the caller's trace-flags
 * and `tracestate`; otherwise it starts a new, sampled trace. Either way the gateway receives the headers
 * on the CONNECT and logs the same trace id, so a line in the gateway's log can be tied to this sidecar's
 * line and to the agent, and with OTLP export on, the sidecar's span (this `spanId`) is the parent of
 * the gateway's.
 */
export interface TunnelTrace {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  readonly flags: number;
  /** The caller's `tracestate`, passed on as is (validated and bounded). */
  readonly traceState: string | undefined;
  /** The `traceparent` header value to send to the gateway. */
  readonly header: string;
}

export function startTunnelTrace(
  incoming: string | string[] | undefined,
  incomingState?: string | string[] | undefined,
): TunnelTrace {
  const parent = parseTraceContext(incoming, incomingState);
  const traceId = parent?.traceId ?? nonZeroHex(16);
  const spanId = nonZeroHex(8);
  // A new trace is sampled: the sidecar does no sampling of its own and defers to whoever collects spans.
  const flags = parent?.flags ?? TRACE_FLAG_SAMPLED;
  return {
    traceId,
    spanId,
    parentSpanId: parent?.parentSpanId,
    flags,
    traceState: parent?.traceState,
    header: formatTraceparent(traceId, spanId, flags),
  };
}

/** The headers that carry this trace to the gateway. */
export function traceHeaders(trace: TunnelTrace): Record<string, string> {
  return trace.traceState === undefined
    ? { traceparent: trace.header }
    : { traceparent: trace.header, tracestate: trace.traceState };
}

/** All-zero ids are invalid in W3C Trace Context; 2^-64 odds, but cheap to rule out. */
function nonZeroHex(bytes: number): string {
  for (;;) {
    const id = randomBytes(bytes).toString('hex');
    if (/[^0]/.test(id)) return id;
  }
}
