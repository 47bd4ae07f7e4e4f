import { TraceFlags } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import {
  defaultResource,
  detectResources,
  envDetector,
  resourceFromAttributes,
} from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
  type SpanProcessor,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace';
import { packageVersion } from '../version.js';
import { SpanRecorder } from './recorded-spans.js';
import type { TracingSettings } from './settings.js';

/**
 * The OpenTelemetry SDK side of tracing: a tracer provider whose spans go through a bounded batch queue to
 * one OTLP exporter. Only ever loaded by dynamic import (tracing/load.ts), so a gateway without an
 * endpoint never loads the SDK.
 *
 * A collector that is down or slow cannot slow a CONNECT: ending a span only appends it to the queue
 * (BatchSpanProcessor), exports run on their own timer, and when the queue is full new spans are dropped
 * and counted (SpanCounts.dropped) instead of waiting.
 */

/** Running totals of what became of the spans ended (read at scrape time for the metrics). */
export interface SpanCounts {
  exported: number;
  failed: number;
  dropped: number;
}

export interface TracePipeline {
  /** Where the subscribers record their spans. */
  readonly recorder: SpanRecorder;
  readonly counts: Readonly<SpanCounts>;
  /** Exports what is queued (bounded by `timeoutMs`) and stops; errors are swallowed, never thrown. */
  shutdown(timeoutMs: number): Promise<void>;
}

export interface PipelineOptions {
  /** Told when exports start failing (with the error) and when they succeed again. */
  readonly onExportStatus?: (failing: boolean, error: string | undefined) => void;
}

export async function startPipeline(
  settings: TracingSettings,
  options: PipelineOptions = {},
): Promise<TracePipeline> {
  const { processor, counts } = exportQueue(
    await createExporter(settings),
    settings.batch,
    options.onExportStatus,
  );
  // Precedence: the SDK's defaults, then ours, then OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES.
  const resource = defaultResource()
    .merge(
      resourceFromAttributes({ 'service.name': settings.serviceName, 'service.version': packageVersion() }),
    )
    .merge(detectResources({ detectors: [envDetector] }));
  await resource.waitForAsyncAttributes?.();
  const scope = { name: 'agent-gateway', version: packageVersion() };
  return {
    recorder: new SpanRecorder(processor, resource, scope, samplerOf(settings)),
    counts,
    async shutdown(timeoutMs: number) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      });
      // forceFlush/shutdown reject when the collector is away ("Concurrent export limit reached", timeouts):
      // a stopping gateway must not wait on that beyond its deadline, nor fail because of it.
      await Promise.race([processor.shutdown().catch(() => undefined), deadline]);
      clearTimeout(timer);
    },
  };
}

/**
 * The bounded batch queue in front of `exporter`, with its counts: spans handed to the exporter and how
 * each export ended, and spans dropped because the queue was full.
 */
export function exportQueue(
  exporter: SpanExporter,
  batch: TracingSettings['batch'],
  onExportStatus?: PipelineOptions['onExportStatus'],
): { processor: SpanProcessor; counts: Readonly<SpanCounts> } {
  const counts: SpanCounts = { exported: 0, failed: 0, dropped: 0 };
  const counting = new CountingExporter(exporter, counts, onExportStatus);
  const processor = new BoundedQueue(
    new BatchSpanProcessor({ exporter: counting, ...batch }),
    counting,
    batch.maxQueueSize,
    counts,
  );
  return { processor, counts };
}

async function createExporter(settings: TracingSettings): Promise<SpanExporter> {
  const config = { url: settings.url };
  switch (settings.protocol) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter(config);
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(config);
    case 'http/json':
      return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter(config);
  }
}

function samplerOf(settings: TracingSettings): Sampler {
  const ratio = new TraceIdRatioBasedSampler(settings.samplerRatio);
  switch (settings.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio });
  }
}

/** Counts what the batch processor hands to the exporter and how each export ended. */
class CountingExporter implements SpanExporter {
  /** Spans handed to export() so far (the queue's outflow). */
  handed = 0;
  private failing = false;

  constructor(
    private readonly inner: SpanExporter,
    private readonly counts: SpanCounts,
    private readonly onStatus: PipelineOptions['onExportStatus'],
  ) {}

  export(spans: ReadableSpan[], done: Parameters<SpanExporter['export']>[1]): void {
    this.handed += spans.length;
    this.inner.export(spans, (result) => {
      const ok = result.code === ExportResultCode.SUCCESS;
      if (ok) this.counts.exported += spans.length;
      else this.counts.failed += spans.length;
      if (ok === this.failing) {
        this.failing = !ok;
        this.onStatus?.(!ok, ok ? undefined : (result.error?.message ?? 'export failed'));
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

/**
 * The batch processor drops spans beyond its queue silently; this keeps the same bound in front of it
 * (spans accepted minus spans handed to the exporter) so that every dropped span is counted.
 */
class BoundedQueue implements SpanProcessor {
  private accepted = 0;

  constructor(
    private readonly inner: SpanProcessor,
    private readonly exporter: CountingExporter,
    private readonly maxQueueSize: number,
    private readonly counts: SpanCounts,
  ) {}

  onStart(): void {}

  onEnd(span: ReadableSpan): void {
    // The batch processor skips unsampled spans too; they are neither queued nor dropped.
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.accepted - this.exporter.handed >= this.maxQueueSize) {
      this.counts.dropped++;
      return;
    }
    this.accepted++;
    this.inner.onEnd(span);
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}
