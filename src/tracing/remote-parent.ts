import { createTraceState, type SpanContext } from '@opentelemetry/api';

/** The caller's span as a remote parent, as its `traceparent`/`tracestate` named it; none for a new trace. */
export function remoteParent(
  caller:
    | {
        readonly traceId: string;
        readonly spanId: string;
        readonly flags: number;
        readonly traceState?: string | undefined;
      }
    | undefined,
): SpanContext | undefined {
  if (caller === undefined) return undefined;
  return {
    traceId: caller.traceId,
    spanId: caller.spanId,
    traceFlags: caller.flags,
    isRemote: true,
    ...(caller.traceState !== undefined ? { traceState: createTraceState(caller.traceState) } : {}),
  };
}
