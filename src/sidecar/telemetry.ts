import { AdminServer } from '../admin/admin-server.js';
import { TokenAuthority, tokenCredential } from '../admin/auth.js';
import { healthRoutes } from '../admin/health-routes.js';
import { metricsRoutes } from '../admin/metrics-routes.js';
import { redactUrl } from '../config/redact.js';
import type { Logger } from '../observability/logger.js';
import type { TracePipeline } from '../tracing/pipeline.js';
import type { SidecarConfig } from './config.js';
import { SidecarEvent } from './events.js';
import { SidecarEvents } from './tunnel-events.js';

export interface SidecarTelemetry {
  readonly events: SidecarEvents;
  /** `host:port` of the admin listener, when there is one. */
  readonly adminAddr: string | undefined;
  stop(): Promise<void>;
}

const TRACE_FLUSH_MS = 3000;

/**
 * The sidecar's observability beside its log: spans over OTLP (loaded only with an endpoint) and its own
 * /metrics on a loopback admin address (loaded only when one is given), both subscribers of its tunnel
 * events.
 */
export async function startSidecarTelemetry(
  config: SidecarConfig,
  logger: Logger,
): Promise<SidecarTelemetry> {
  const events = new SidecarEvents((error, event) =>
    logger.error({ event, error: (error as Error)?.message ?? String(error) }, SidecarEvent.internalError),
  );
  for (const warning of config.tracing.warnings) logger.warn({ warning }, SidecarEvent.traceSettingIgnored);
  let pipeline: TracePipeline | undefined;
  const settings = config.tracing.settings;
  if (settings !== undefined) {
    const [{ startPipeline }, { sidecarSpanSubscriber }] = await Promise.all([
      import('../tracing/pipeline.js'),
      import('./tunnel-spans.js'),
    ]);
    // The sidecar has already told the gateway "sampled" when it makes its span, so it does not sample
    // again: OTEL_TRACES_SAMPLER would only tear holes in traces the gateway records.
    pipeline = await startPipeline(
      { ...settings, sampler: 'parentbased_always_on' },
      {
        onExportStatus: (failing, error) => {
          if (failing) logger.warn({ error }, SidecarEvent.traceExportFailing);
          else logger.info({}, SidecarEvent.traceExportRecovered);
        },
      },
    );
    events.subscribe(sidecarSpanSubscriber(pipeline.recorder));
    logger.info(
      { otlp_endpoint: redactUrl(settings.url), otlp_protocol: settings.protocol },
      SidecarEvent.traceExportEnabled,
    );
  }
  let admin: AdminServer | undefined;
  let adminAddr: string | undefined;
  if (config.admin !== undefined) {
    const { SidecarMetrics } = await import('./metrics.js');
    const metrics = new SidecarMetrics({ traceSpans: () => pipeline?.counts });
    events.subscribe(metrics.subscriber());
    const authority = new TokenAuthority({ admin: config.admin.token, readonly: undefined });
    admin = new AdminServer({
      host: config.admin.listen.host,
      port: config.admin.listen.port,
      authenticate: (req) => tokenCredential(authority.roleOf(req.headers.authorization)),
      onError: (error, route) =>
        logger.error(
          { route, error: (error as Error)?.message ?? String(error) },
          SidecarEvent.internalError,
        ),
    });
    const liveness = healthRoutes({ readiness: () => [] }).filter((route) => route.path === '/healthz');
    admin.add(...liveness, ...metricsRoutes(metrics));
    try {
      const address = await admin.listen();
      adminAddr = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
    } catch (error) {
      await pipeline?.shutdown(0);
      throw error;
    }
    logger.info({ admin_addr: adminAddr }, SidecarEvent.adminListening);
  }
  return {
    events,
    adminAddr,
    async stop() {
      await admin?.close();
      await pipeline?.shutdown(TRACE_FLUSH_MS);
    },
  };
}
