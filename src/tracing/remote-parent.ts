import { type Context, createTraceState, ROOT_CONTEXT, trace } from '@opentelemetry/api';

/**
 * The context whose (remote) parent is the caller's span, as its `traceparent`/`tracestate` named it; or
 * the root context, for a new trace, when there is none.
 */
export function remoteParent(
  caller:
    | {
        readonly traceId: string;
        readonly spanId: string;
        readonly flags: number;
        readonly traceState?: string | undefined;
      }
    | undefined,
): Context {
  if (caller === undefined) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: caller.traceId,
    spanId: caller.spanId,
    traceFlags: caller.flags,
    isRemote: true,
    ...(caller.traceState !== undefined ? { traceState: createTraceState(caller.traceState) } : {}),
  });
}
