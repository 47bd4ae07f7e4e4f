import { AdminServer } from '../admin/admin-server.js';
import { TokenAuthority, tokenCredential } from '../admin/auth.js';
import { healthRoutes } from '../admin/health-routes.js';
import { limitRoutes, type QuotaSource } from '../admin/limit-routes.js';
import { type MetricsSource, metricsRoutes } from '../admin/metrics-routes.js';
import { type TunnelControl, type TunnelSelector, tunnelRoutes } from '../admin/tunnel-routes.js';
import type { SharedBudgets } from '../budget/shared-budgets.js';
import { parseListenAddr } from '../config/listen-addr.js';
import type { LoadedConfig } from '../config/load.js';
import type { RateLimitSettings } from '../config/rate-limit.js';
import { loadTlsMaterial } from '../config/tls-material.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { OpenTunnels } from '../proxy/open-tunnels.js';
import type { GatewayEvents } from '../session/events.js';
import type { GatewayStatus } from './status.js';

/**
 * Starts the admin listener when `[admin] listen_addr` is set: health and readiness for probes, the
 * tunnel list and the kill switch for operators, the event feed (`/v1/events`) and the limits in force
 * (`/v1/limits`) that `agent-gateway dashboard` reads, and /metrics for Prometheus.
 * Returns undefined when it is off.
 */
export async function startAdmin(deps: {
  readonly loaded: LoadedConfig;
  readonly tunnels: OpenTunnels;
  readonly events: GatewayEvents;
  readonly status: GatewayStatus;
  readonly logger: Logger;
  /** The rate limits in force now (they change on SIGHUP). */
  readonly rateLimits: () => RateLimitSettings;
  /** Shared budgets, when configured: quotas for the dashboard's bandwidth view. */
  readonly budgets?: Pick<SharedBudgets, 'quotaFor'> | undefined;
  /** /metrics (gateway/telemetry-wiring.ts builds it whenever the admin listener is configured). */
  readonly metrics: MetricsSource | undefined;
}): Promise<AdminServer | undefined> {
  const { admin } = deps.loaded.config;
  const tokens = deps.loaded.adminTokens;
  if (admin.listen_addr === undefined || tokens === undefined) return undefined;
  const listen = parseListenAddr(admin.listen_addr);
  const tls =
    admin.tls_cert_path !== undefined && admin.tls_key_path !== undefined
      ? await loadTlsMaterial(
          { tls_cert_path: admin.tls_cert_path, tls_key_path: admin.tls_key_path },
          'admin',
        )
      : undefined;
  const authority = new TokenAuthority(tokens);
  const server = new AdminServer({
    host: listen.host,
    port: listen.port,
    reusePort: deps.loaded.config.server.reuse_port,
    ...(tls ? { tls } : {}),
    authenticate: (req) => tokenCredential(authority.roleOf(req.headers.authorization)),
    onError: (error, route) =>
      deps.logger.error({ route, error: (error as Error)?.message ?? String(error) }, LogEvent.internalError),
  });
  server.add(
    ...healthRoutes(deps.status),
    ...tunnelRoutes(tunnelControl(deps.tunnels, deps.events)),
    ...limitRoutes(deps.rateLimits, quotaSource(deps)),
  );
  if (deps.metrics !== undefined) server.add(...metricsRoutes(deps.metrics));
  // Loaded only with the admin listener on: a gateway without one carries no feed code or ring.
  const { EventFeed } = await import('../eventfeed/feed.js');
  const feed = new EventFeed(deps.events);
  server.add(...feed.routes());
  server.onClose(() => feed.close());
  const address = await server.listen();
  deps.logger.info(
    {
      admin_addr: `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
      tls: tls !== undefined,
      readonly_role: tokens.readonly !== undefined,
    },
    LogEvent.adminListening,
  );
  return server;
}

function tunnelControl(tunnels: OpenTunnels, events: GatewayEvents): TunnelControl {
  return {
    list: () => tunnels.list(),
    close(selector: TunnelSelector, reason: string): number {
      const ids =
        'tunnelId' in selector
          ? [selector.tunnelId]
          : tunnels.sessionsOf(selector).map((session) => session.id);
      return tunnels.closeSessions(ids, 'operator', reason);
    },
    audit: (action) => events.emit('operatorAction', action),
  };
}

/** The shared store's quota use in the admin API's shape (`/v1/limits`), or no source without budgets. */
function quotaSource(deps: {
  readonly rateLimits: () => RateLimitSettings;
  readonly budgets?: Pick<SharedBudgets, 'quotaFor'> | undefined;
}): QuotaSource | undefined {
  const { budgets } = deps;
  if (budgets === undefined) return undefined;
  return {
    async quotaFor(identity) {
      const use = await budgets.quotaFor(identity, deps.rateLimits());
      return use === null
        ? null
        : { upload_quota_bytes: use.quotaBytes, upload_used_bytes: use.usedBytes, window_s: use.windowS };
    },
  };
}
