import {
  type Attributes,
  type HrTime,
  ROOT_CONTEXT,
  type SpanContext,
  type SpanKind,
  type SpanStatus,
  SpanStatusCode,
  TraceFlags,
  type TraceState,
  trace,
} from '@opentelemetry/api';
import { hrTimeDuration, type InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import {
  RandomIdGenerator,
  type ReadableSpan,
  type Sampler,
  SamplingDecision,
  type SpanProcessor,
  type TimedEvent,
} from '@opentelemetry/sdk-trace';

/** A finished span as recorded after the fact: ids, times and everything it carries are known. */
export interface SpanRecord {
  readonly name: string;
  readonly kind: SpanKind;
  /** This span's context (see SpanRecorder.child/root for making one). */
  readonly context: SpanContext;
  readonly parent: SpanContext | undefined;
  readonly start: HrTime;
  readonly end: HrTime;
  readonly attributes: Attributes;
  readonly events?: TimedEvent[];
  readonly status?: SpanStatus;
}

const UNSET: SpanStatus = { code: SpanStatusCode.UNSET };

/**
 * Spans made after the fact, handed straight to the SDK's span processor (the bounded batch queue and the
 * OTLP exporter, pipeline.ts) as the ReadableSpans exporters consume.
 *
 * Why not the SDK's Tracer: it is built for live spans. Given explicit times it still corrects each span
 * by a clock offset of its own (children then end after their parent), it cannot take a span id already
 * sent in a `traceparent` (the sidecar's case), and creating a span through it cost ~6 µs of CPU, which
 * at five spans per tunnel was most of what tracing added to a tunnel. Sampling is still the SDK's
 * Sampler, asked once per CONNECT; every span of that CONNECT follows its decision.
 */
export class SpanRecorder {
  private readonly ids = new RandomIdGenerator();

  constructor(
    private readonly processor: SpanProcessor,
    private readonly resource: Resource,
    private readonly scope: InstrumentationScope,
    private readonly sampler: Sampler,
  ) {}

  /**
   * The context of a new span continuing `parent` (the caller's, remote), or starting a trace; undefined
   * when the sampler says it is not recorded. `spanId`/`traceId` are used when given (ids already sent).
   */
  root(
    parent: SpanContext | undefined,
    name: string,
    kind: SpanKind,
    attributes: Attributes,
    ids: { readonly traceId?: string; readonly spanId?: string } = {},
  ): SpanContext | undefined {
    const traceId = parent?.traceId ?? ids.traceId ?? this.ids.generateTraceId();
    const context = parent === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
    const decision = this.sampler.shouldSample(context, traceId, name, kind, attributes, []);
    if (decision.decision !== SamplingDecision.RECORD_AND_SAMPLED) return undefined;
    return {
      traceId,
      spanId: ids.spanId ?? this.ids.generateSpanId(),
      traceFlags: TraceFlags.SAMPLED,
      ...traceStateOf(decision.traceState ?? parent?.traceState),
    };
  }

  /** The context of a child of a recorded span (same trace and decision, a new id). */
  child(parent: SpanContext): SpanContext {
    return {
      traceId: parent.traceId,
      spanId: this.ids.generateSpanId(),
      traceFlags: parent.traceFlags,
      ...traceStateOf(parent.traceState),
    };
  }

  record(r: SpanRecord): void {
    const context = r.context;
    const span: ReadableSpan = {
      name: r.name,
      kind: r.kind,
      spanContext: () => context,
      ...(r.parent === undefined ? {} : { parentSpanContext: r.parent }),
      startTime: r.start,
      endTime: r.end,
      status: r.status ?? UNSET,
      attributes: r.attributes,
      links: [],
      events: r.events ?? [],
      duration: hrTimeDuration(r.start, r.end),
      ended: true,
      resource: this.resource,
      instrumentationScope: this.scope,
      droppedAttributesCount: 0,
      droppedEventsCount: 0,
      droppedLinksCount: 0,
    };
    this.processor.onEnd(span);
  }
}

function traceStateOf(state: TraceState | undefined): { traceState?: TraceState } {
  return state === undefined ? {} : { traceState: state };
}
