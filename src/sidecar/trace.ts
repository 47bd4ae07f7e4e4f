import { randomBytes } from 'node:crypto';
import { parseTraceparent } from '../tracecontext/traceparent.js';

/**
 * One W3C trace context per tunnel. When the local client already sent a `traceparent` (an
 * instrumented agent), the tunnel joins that trace as a child span; otherwise it starts a new trace.
 * Either way the gateway receives the header on the CONNECT and logs the same trace id, so a line in
 * the gateway's log can be tied to this sidecar's line and to the agent.
 */
export interface TunnelTrace {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId: string | undefined;
  /** The `traceparent` header value to send to the gateway. */
  readonly header: string;
}

export function startTunnelTrace(incoming: string | string[] | undefined): TunnelTrace {
  const parent = parseTraceparent(incoming);
  const traceId = parent?.traceId ?? nonZeroHex(16);
  const spanId = nonZeroHex(8);
  // Sampled: the sidecar does no sampling of its own, so it defers to whoever collects the spans.
  return { traceId, spanId, parentSpanId: parent?.parentSpanId, header: `00-${traceId}-${spanId}-01` };
}

/** All-zero ids are invalid in W3C Trace Context; 2^-64 odds, but cheap to rule out. */
function nonZeroHex(bytes: number): string {
  for (;;) {
    const id = randomBytes(bytes).toString('hex');
    if (/[^0]/.test(id)) return id;
  }
}
