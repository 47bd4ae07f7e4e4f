import type { AddressInfo } from 'node:net';
import { startSharedBudgets } from '../budget/shared-budgets.js';
import { parseListenAddr } from '../config/listen-addr.js';
import type { LoadedConfig } from '../config/load.js';
import { rateLimitSettings } from '../config/rate-limit.js';
import { loadTlsMaterial } from '../config/tls-material.js';
import { EgressGuard } from '../egress/guard.js';
import type { LookupFn } from '../egress/resolve.js';
import { auditLogSubscriber } from '../observability/audit-log.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { ConnectFlowDeps } from '../proxy/connect-flow.js';
import { listenOn } from '../proxy/listen.js';
import { OpenTunnels } from '../proxy/open-tunnels.js';
import { RateLimiter } from '../ratelimit/limiter.js';
import { GatewayEvents } from '../session/events.js';
import { systemClock } from '../time/clock.js';
import { runningVersions } from '../version.js';
import { startAdmin } from './admin-wiring.js';
import { drain } from './drain.js';
import { createFronts } from './front-wiring.js';
import { startLiveAuthorization } from './live-authorization.js';
import { ownAddresses, protectedEndpoints } from './own-addresses.js';
import { openRegistrySide } from './registry-wiring.js';
import { applyReload } from './reload.js';
import { GatewayStatus } from './status.js';
import { startTelemetry } from './telemetry-wiring.js';
import { isWorker } from './workers.js';

export interface GatewayOptions {
  readonly logger: Logger;
  /** Replaces DNS in tests. */
  readonly lookup?: LookupFn;
  /** The OTEL_* variables (the process environment by default). */
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunningGateway {
  readonly address: AddressInfo;
  /** The admin listener's address, when `[admin] listen_addr` is set. */
  readonly adminAddress: AddressInfo | undefined;
  /** Stop accepting, let tunnels finish for up to `graceMs`, then close everything. */
  shutdown(graceMs: number): Promise<void>;
  /**
   * Applies a newly read config (SIGHUP): its rate limits take effect for new and running tunnels, the
   * certificates (re-read from their files) for the next handshake; changed keys that need a restart are
   * logged as ignored. A certificate that does not load changes nothing.
   */
  reload(next: LoadedConfig): Promise<void>;
  /**
   * Resolves if the gateway must stop: a registry that was down at start answered at the wrong schema
   * (or refused the gateway's credentials). The caller shuts down and exits 1.
   */
  readonly fatal: Promise<Error>;
}

/**
 * The composition root: wires config → events and the audit log → registry and policy → egress → rate
 * limits → open tunnels → front ends and the TLS listener → live authorization → admin listener, and
 * starts listening. Each piece gets a narrow options object; nothing below reads config files or the
 * environment.
 */
export async function startGateway(loaded: LoadedConfig, options: GatewayOptions): Promise<RunningGateway> {
  const { config } = loaded;
  const { logger } = options;
  // Checked again (not only by loadConfig): the files may have changed since the config was loaded.
  const tls = await loadTlsMaterial(config.server);
  const listen = parseListenAddr(config.server.listen_addr);

  const events = new GatewayEvents((error, event) =>
    logger.error({ event, error: (error as Error)?.message ?? String(error) }, LogEvent.internalError),
  );
  const audit = auditLogSubscriber(logger, { refusalsPerSource: config.observability.deny_log_limit });
  events.subscribe(audit);
  const telemetry = await startTelemetry({ loaded, events, logger, env: options.env ?? process.env });
  const registry = await openRegistrySide(loaded, events, options.lookup).catch(async (err: unknown) => {
    await telemetry.stop();
    throw err;
  });
  const { policy } = registry;
  const status = new GatewayStatus(registry.health);

  const own = ownAddresses(listen.host);
  const guard = new EgressGuard({
    allowCidrs: config.egress.allow_cidrs,
    denyCidrs: config.egress.deny_cidrs,
    ownAddresses: own,
  });
  // [rate_limit] shared = true: buckets, quotas and tunnel caps in the registry database (budget/).
  const budgets = config.rate_limit.shared
    ? await startSharedBudgets({
        databaseUrl: loaded.databaseUrl,
        connectTimeoutMs: config.policy.connect_timeout_ms,
        events,
      }).catch(async (err: unknown) => {
        await registry.close(1);
        throw err;
      })
    : undefined;
  const limiter = new RateLimiter(rateLimitSettings(config.rate_limit), systemClock, budgets?.limiterOptions);
  budgets?.track(limiter);
  const flow: ConnectFlowDeps = {
    policy,
    limiter,
    guard,
    connectTimeoutMs: config.egress.connect_timeout_ms,
    events,
    ...(options.lookup ? { lookup: options.lookup } : {}),
  };
  const tunnels = new OpenTunnels({
    events,
    idleTimeoutMs: config.server.tunnel_idle_timeout_s * 1000,
    maxLifetimeMs: config.server.max_tunnel_lifetime_s * 1000,
    limiter,
  });
  const fronts = createFronts({ loaded, tls, flow, tunnels, events, logger, limiter });
  const { server } = fronts;

  // Cluster workers (server.workers > 1) asking for port 0 would each get a random port of their own with
  // SO_REUSEPORT; without it they share the primary's one socket. A fixed port keeps SO_REUSEPORT (rolling
  // restarts), and then each worker binds its own socket on that port.
  const reusePort = config.server.reuse_port && !(isWorker() && listen.port === 0);
  const address = await listenOn(server, { ...listen, reusePort });
  server.on('error', (err) => logger.error({ error: err.message }, LogEvent.listenerError));
  const live = startLiveAuthorization({
    databaseUrl: loaded.databaseUrl,
    config,
    policy,
    tunnels,
    events,
    health: registry.health,
  });
  status.attachLiveCheck(live.check);
  status.listening = true;
  telemetry.attach({ tunnels, registry, live: live.check, status });
  // What is in force: the config the gateway started with, with what SIGHUP has applied since.
  let running = config;
  let admin: Awaited<ReturnType<typeof startAdmin>>;
  try {
    admin = await startAdmin({
      loaded,
      tunnels,
      events,
      status,
      logger,
      rateLimits: () => rateLimitSettings(running.rate_limit),
      budgets,
      metrics: telemetry.metrics,
    });
  } catch (err) {
    server.close();
    await live.stop();
    await budgets?.stop();
    await registry.close(1);
    await telemetry.stop();
    throw err;
  }
  // Only now is the port known (listen_addr may say 0). Until the registry is protected too (and its
  // schema verified, which may be later if it was down at start), no CONNECT is decided.
  registry.admit((endpoints) =>
    guard.protect(
      protectedEndpoints({
        ownAddresses: own,
        listener: { host: listen.host, port: address.port },
        registry: endpoints,
      }),
    ),
  );
  logger.info(
    {
      listen_addr: `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
      reuse_port: reusePort,
      ...runningVersions(),
    },
    LogEvent.listening,
  );

  let shuttingDown: Promise<void> | undefined;
  return {
    address,
    adminAddress: admin === undefined ? undefined : (admin.server.address() as AddressInfo),
    shutdown(graceMs: number): Promise<void> {
      shuttingDown ??= drain(
        {
          logger,
          status,
          fronts,
          tunnels,
          stop: [
            () => live.stop(),
            () => admin?.close(),
            () => limiter.stop(),
            () => budgets?.stop(),
            () => registry.close(2),
            () => telemetry.stop(),
            () => audit.flush(),
          ],
          drainDelayMs: config.server.drain_delay_s * 1000,
        },
        graceMs,
      );
      return shuttingDown;
    },
    async reload(next: LoadedConfig): Promise<void> {
      const adminTls = admin?.certificate !== undefined ? admin : undefined;
      running = await applyReload(running, next, { limiter, logger, server: fronts, admin: adminTls });
    },
    fatal: registry.fatal,
  };
}
