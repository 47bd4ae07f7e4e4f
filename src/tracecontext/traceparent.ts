/**
 * W3C Trace Context `traceparent` (version 00): the gateway continues the caller's trace in its logs.
 * Only a well-formed header is used; anything else is ignored rather than echoed into logs.
 */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;
const ALL_ZERO_TRACE = '0'.repeat(32);
const ALL_ZERO_SPAN = '0'.repeat(16);

export interface TraceContext {
  readonly traceId: string;
  readonly parentSpanId: string;
}

export function parseTraceparent(value: string | string[] | undefined): TraceContext | undefined {
  if (typeof value !== 'string' || value.length !== 55) return undefined;
  const m = TRACEPARENT.exec(value);
  if (!m) return undefined;
  const traceId = m[1]!;
  const parentSpanId = m[2]!;
  if (traceId === ALL_ZERO_TRACE || parentSpanId === ALL_ZERO_SPAN) return undefined;
  return { traceId, parentSpanId };
}
