import { RandomIdGenerator } from '@opentelemetry/sdk-trace';

/**
 * Span and trace ids for spans made after the fact whose ids were already sent: the sidecar puts its
 * span's id in the `traceparent` of the CONNECT before the span exists (it is made when the gateway has
 * answered, from recorded times). The next span started takes the staged ids; any other gets random ones.
 * The SDK's Tracer.startSpan asks for each id once, synchronously, so staging right before the call is
 * exact.
 */
export class StagedIdGenerator {
  private readonly random = new RandomIdGenerator();
  private spanId: string | undefined;
  private traceId: string | undefined;

  stage(traceId: string, spanId: string): void {
    this.traceId = traceId;
    this.spanId = spanId;
  }

  generateTraceId(): string {
    const id = this.traceId ?? this.random.generateTraceId();
    this.traceId = undefined;
    return id;
  }

  generateSpanId(): string {
    const id = this.spanId ?? this.random.generateSpanId();
    this.spanId = undefined;
    return id;
  }
}
