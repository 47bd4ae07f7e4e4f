import type { GatewaySubscriber } from '../session/events.js';
import type { TracingSettings } from './settings.js';

/** What the gateway holds of tracing once it is on. */
export interface GatewayTracing {
  /** Turns the gateway's events into spans (connect-spans.ts). */
  readonly subscriber: GatewaySubscriber;
  /** Running totals of exported, failed and dropped spans (for the metrics). */
  counts(): { readonly exported: number; readonly failed: number; readonly dropped: number };
  /** Exports what is queued, within `timeoutMs`, and stops. Never throws. */
  shutdown(timeoutMs: number): Promise<void>;
}

/**
 * Loads the OpenTelemetry SDK and the span subscriber by dynamic import: this module imports nothing of
 * OpenTelemetry itself, so a gateway without an OTLP endpoint loads none of it (checked by
 * test/unit/tracing-isolation.test.ts).
 */
export async function loadGatewayTracing(
  settings: TracingSettings,
  onExportStatus: (failing: boolean, error: string | undefined) => void,
  onError: (error: unknown) => void,
): Promise<GatewayTracing> {
  const [{ startPipeline }, { connectSpanSubscriber }] = await Promise.all([
    import('./pipeline.js'),
    import('./connect-spans.js'),
  ]);
  const pipeline = await startPipeline(settings, { onExportStatus });
  return {
    subscriber: connectSpanSubscriber(pipeline.recorder, onError),
    counts: () => pipeline.counts,
    shutdown: (timeoutMs) => pipeline.shutdown(timeoutMs),
  };
}
