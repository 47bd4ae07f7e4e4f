import type { AddressInfo } from 'node:net';
import { parseListenAddr } from '../config/listen-addr.js';
import type { LoadedConfig } from '../config/load.js';
import { loadTlsMaterial } from '../config/tls-material.js';
import { EgressGuard } from '../egress/guard.js';
import type { LookupFn } from '../egress/resolve.js';
import { auditLogSubscriber } from '../observability/audit-log.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { ConnectFlowDeps } from '../proxy/connect-flow.js';
import { OpenTunnels } from '../proxy/open-tunnels.js';
import { RateLimiter } from '../ratelimit/limiter.js';
import { rateLimitSettings } from '../ratelimit/settings.js';
import { GatewayEvents } from '../session/events.js';
import { startAdmin } from './admin-wiring.js';
import { drain } from './drain.js';
import { createFronts } from './front-wiring.js';
import { startLiveAuthorization } from './live-authorization.js';
import { ownAddresses, protectedEndpoints } from './own-addresses.js';
import { openRegistrySide } from './registry-wiring.js';
import { applyReload } from './reload.js';
import { GatewayStatus } from './status.js';
import { startTelemetry } from './telemetry-wiring.js';

export interface GatewayOptions {
  readonly logger: Logger;
  /** Replaces DNS in tests. */
  readonly lookup?: LookupFn;
  /** The OTEL_* variables (the process environment by default). */
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunningGateway {
  readonly address: AddressInfo;
  /** Stop accepting, let tunnels finish for up to `graceMs`, then close everything. */
  shutdown(graceMs: number): Promise<void>;
  /**
   * Applies a newly read config (SIGHUP): its rate limits take effect for new and running tunnels;
   * changed keys that need a restart are logged as ignored.
   */
  reload(next: LoadedConfig): void;
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
  const limiter = new RateLimiter(rateLimitSettings(config.rate_limit));
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

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ error: err.message }, LogEvent.listenerError));
  const address = server.address() as AddressInfo;
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
  let admin: Awaited<ReturnType<typeof startAdmin>>;
  try {
    admin = await startAdmin({ loaded, tunnels, events, status, logger, metrics: telemetry.metrics });
  } catch (err) {
    server.close();
    await live.stop();
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
    },
    LogEvent.listening,
  );

  let shuttingDown: Promise<void> | undefined;
  // What is in force: the config the gateway started with, with what SIGHUP has applied since.
  let running = config;
  return {
    address,
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
    reload(next: LoadedConfig): void {
      running = applyReload(running, next, { limiter, logger });
    },
    fatal: registry.fatal,
  };
}
