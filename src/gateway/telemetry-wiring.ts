import type { MetricsSource } from '../admin/metrics-routes.js';
import type { LoadedConfig } from '../config/load.js';
import { redactUrl } from '../config/redact.js';
import type { LiveCheck } from '../livecheck/live-check.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { OpenTunnels } from '../proxy/open-tunnels.js';
import type { GatewayEvents } from '../session/events.js';
import type { GatewayTracing } from '../tracing/load.js';
import { resolveTracing } from '../tracing/settings.js';
import type { RegistrySide } from './registry-wiring.js';
import type { GatewayStatus } from './status.js';

/** The service.name of the gateway's spans, as the original gateway exports them. */
export const GATEWAY_SERVICE_NAME = 'agent_gateway';

export interface Telemetry {
  /** The Prometheus text of /metrics; present when the admin listener is configured. */
  readonly metrics: MetricsSource | undefined;
  /** Gives the metrics what they read at scrape time, once the gateway has built it. */
  attach(parts: GatewayParts): void;
  /** Exports the spans still queued (bounded) and stops. */
  stop(): Promise<void>;
}

/** The parts of the running gateway the metrics read at scrape time. */
export interface GatewayParts {
  readonly tunnels: OpenTunnels;
  readonly registry: Pick<RegistrySide, 'gate' | 'health'>;
  readonly live: LiveCheck;
  readonly status: GatewayStatus;
}

/** How long shutdown waits for the last spans to reach the collector. */
const TRACE_FLUSH_MS = 3000;

/**
 * Metrics and traces, both subscribers of the gateway's events and both loaded only when wanted: the
 * metrics (prom-client) when the admin listener that serves /metrics is configured, the OpenTelemetry SDK
 * when an OTLP endpoint is (observability.otlp_endpoint or the OTEL_EXPORTER_OTLP_* variables). A gateway
 * with neither loads neither.
 */
export async function startTelemetry(deps: {
  readonly loaded: LoadedConfig;
  readonly events: GatewayEvents;
  readonly logger: Logger;
  readonly env: NodeJS.ProcessEnv;
}): Promise<Telemetry> {
  const { config } = deps.loaded;
  const { logger, events } = deps;
  const resolved = resolveTracing(
    {
      endpoint: config.observability.otlp_endpoint,
      protocol: config.observability.otlp_protocol,
      serviceName: GATEWAY_SERVICE_NAME,
    },
    deps.env,
  );
  for (const warning of resolved.warnings) logger.warn({ warning }, LogEvent.traceSettingIgnored);
  let tracing: GatewayTracing | undefined;
  if (resolved.settings !== undefined) {
    const { loadGatewayTracing } = await import('../tracing/load.js');
    tracing = await loadGatewayTracing(
      resolved.settings,
      (failing, error) => {
        if (failing) logger.warn({ error }, LogEvent.traceExportFailing);
        else logger.info({}, LogEvent.traceExportRecovered);
      },
      (error) => logger.error({ error: (error as Error)?.message ?? String(error) }, LogEvent.internalError),
    );
    events.subscribe(tracing.subscriber);
    logger.info(
      { otlp_endpoint: redactUrl(resolved.settings.url), otlp_protocol: resolved.settings.protocol },
      LogEvent.traceExportEnabled,
    );
  }

  const adminOn = config.admin.listen_addr !== undefined && deps.loaded.adminTokens !== undefined;
  let metrics: import('../metrics/gateway-metrics.js').GatewayMetrics | undefined;
  let attach: Telemetry['attach'] = () => {};
  if (adminOn) {
    const [{ GatewayMetrics }, { metricsSubscriber }, { attachScrapeSources }] = await Promise.all([
      import('../metrics/gateway-metrics.js'),
      import('../metrics/gateway-recorder.js'),
      import('../metrics/scrape-sources.js'),
    ]);
    const m = new GatewayMetrics({
      enabled: config.observability.per_identity_metrics,
      maxIdentities: config.observability.per_identity_metrics_max,
    });
    events.subscribe(metricsSubscriber(m));
    metrics = m;
    attach = ({ tunnels, registry, live, status }) =>
      attachScrapeSources(m, {
        openTunnels: () => tunnels.list(),
        registryPool: () => ({
          inUse: registry.gate.busy,
          waiting: registry.gate.queued,
          size: config.policy.max_connections,
        }),
        registryUp: () => registry.health.isReady,
        liveCheck: () => live,
        readiness: () => status.readiness(),
        traceSpans: () => tracing?.counts(),
      });
  }
  return {
    metrics,
    attach,
    stop: async () => {
      await tracing?.shutdown(TRACE_FLUSH_MS);
    },
  };
}
