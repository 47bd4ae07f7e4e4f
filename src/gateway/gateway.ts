import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { startSharedBudgets } from '../budget/shared-budgets.js';
import { parseListenAddr } from '../config/listen-addr.js';
import type { LoadedConfig } from '../config/load.js';
import { loadTlsMaterial } from '../config/tls-material.js';
import { EgressGuard } from '../egress/guard.js';
import type { LookupFn } from '../egress/resolve.js';
import { auditLogSubscriber } from '../observability/audit-log.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import { createPolicyEngine } from '../policy/engine.js';
import type { ConnectFlowDeps } from '../proxy/connect-flow.js';
import { connectionInfoOf, neverUsed } from '../proxy/connection-info.js';
import { createHttp1Front } from '../proxy/http1-front.js';
import { createHttp2Front } from '../proxy/http2-front.js';
import { OpenTunnels } from '../proxy/open-tunnels.js';
import { createTlsListener } from '../proxy/tls-listener.js';
import { RateLimiter } from '../ratelimit/limiter.js';
import { rateLimitSettings } from '../ratelimit/settings.js';
import { streamWindowForUpload } from '../ratelimit/stream-window.js';
import { openRegistry, registryTcpEndpoints } from '../registry/connect.js';
import { QueryGate } from '../registry/query-gate.js';
import { RegistryHealth } from '../registry/registry-health.js';
import { assertSchemaVersion } from '../registry/schema-version.js';
import { GatewayEvents } from '../session/events.js';
import { systemClock } from '../time/clock.js';
import { startLiveAuthorization } from './live-authorization.js';
import { ownAddresses, protectedEndpoints, resolveRegistryEndpoints } from './own-addresses.js';
import { changesNeedingRestart } from './reload.js';

export interface GatewayOptions {
  readonly logger: Logger;
  /** Replaces DNS in tests. */
  readonly lookup?: LookupFn;
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
}

/** Wires config → registry → policy → egress → front ends → TLS listener, and starts listening. */
export async function startGateway(loaded: LoadedConfig, options: GatewayOptions): Promise<RunningGateway> {
  const { config } = loaded;
  const { logger } = options;
  // Checked again (not only by loadConfig): the files may have changed since the config was loaded.
  const { certPem, keyPem } = await loadTlsMaterial(config.server);
  const listen = parseListenAddr(config.server.listen_addr);

  const sql = openRegistry(loaded.databaseUrl, config.policy, { applicationName: 'agent-gateway' });
  try {
    await assertSchemaVersion(sql);
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }
  const events = new GatewayEvents((error, event) =>
    logger.error({ event, error: (error as Error)?.message ?? String(error) }, LogEvent.internalError),
  );
  const audit = auditLogSubscriber(logger, { refusalsPerSource: config.observability.deny_log_limit });
  events.subscribe(audit);
  const registryHealth = new RegistryHealth((available, error) =>
    events.emit('registryStatus', { available, error }),
  );
  const gate = new QueryGate(config.policy.max_connections, registryHealth);
  const policy = createPolicyEngine(sql, {
    acquireTimeoutMs: config.policy.pool_acquire_timeout_ms,
    queryTimeoutMs: config.policy.query_timeout_ms,
    decisionCacheMs: config.policy.decision_cache_ms,
    gate,
  });

  // The registry is never a tunnel's destination (see own-addresses.ts); its host is resolved once, here.
  let registry: Awaited<ReturnType<typeof resolveRegistryEndpoints>>;
  try {
    registry = await resolveRegistryEndpoints(registryTcpEndpoints(sql), {
      timeoutMs: config.egress.connect_timeout_ms,
      ...(options.lookup ? { lookup: options.lookup } : {}),
    });
  } catch (err) {
    await policy.close(1).catch(() => undefined);
    throw err;
  }
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
        await policy.close(1).catch(() => undefined);
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
  const http1 = createHttp1Front({ flow, tunnels, events, logger, maxHeaderBytes: 16 * 1024 });
  const http2 = createHttp2Front({
    flow,
    tunnels,
    events,
    logger,
    maxConcurrentStreams: config.server.h2_max_concurrent_streams,
    streamWindowBytes: config.server.h2_stream_window_bytes,
    connectionWindowBytes: config.server.h2_connection_window_bytes,
    maxHeaderListBytes: 16 * 1024,
    streamWindowFor: (identity) =>
      identity === null
        ? config.server.h2_stream_window_bytes
        : streamWindowForUpload(limiter.uploadLimitsOf(identity), config.server.h2_stream_window_bytes),
  });

  const sockets = new Set<TLSSocket>();
  const { server } = createTlsListener({
    certPem,
    keyPem,
    handshakeTimeoutMs: config.server.handshake_timeout_ms,
    requestTimeoutMs: config.server.request_timeout_ms,
    sessionLifetimeS: config.server.tls_session_lifetime_s,
    identityOidContent: loaded.identityOidContent,
    caps: {
      maxConnections: config.server.max_connections,
      maxPerSource: config.server.max_connections_per_source,
    },
    events,
    onHttp1: (socket) => {
      track(sockets, socket);
      http1.accept(socket);
    },
    onHttp2: (socket) => {
      track(sockets, socket);
      http2.accept(socket);
    },
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listen.host, port: listen.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ error: err.message }, LogEvent.listenerError));
  const address = server.address() as AddressInfo;
  const live = startLiveAuthorization({ databaseUrl: loaded.databaseUrl, config, policy, tunnels, events });
  // Only now is the port known (listen_addr may say 0); no CONNECT has been decided yet.
  guard.protect(
    protectedEndpoints({ ownAddresses: own, listener: { host: listen.host, port: address.port }, registry }),
  );
  logger.info(
    {
      listen_addr: `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`,
    },
    LogEvent.listening,
  );

  let shuttingDown: Promise<void> | undefined;
  // What is in force: the config the gateway started with, with the latest reloaded [rate_limit].
  let running = config;
  return {
    address,
    shutdown(graceMs: number): Promise<void> {
      shuttingDown ??= drain(graceMs);
      return shuttingDown;
    },
    reload(next: LoadedConfig): void {
      const ignored = changesNeedingRestart(running, next.config);
      limiter.update(rateLimitSettings(next.config.rate_limit));
      running = { ...running, rate_limit: next.config.rate_limit };
      const rl = next.config.rate_limit;
      logger[ignored.length > 0 ? 'warn' : 'info'](
        {
          config_path: next.path,
          bytes_per_second: rl.bytes_per_second,
          burst_bytes: rl.burst_bytes,
          download_bytes_per_second: rl.download_bytes_per_second ?? 0,
          total_bytes_per_second: rl.total_bytes_per_second ?? 0,
          identity_overrides: Object.keys(rl.identities ?? {}).length,
          ignored_until_restart: ignored.length > 0 ? ignored : undefined,
        },
        LogEvent.configReloaded,
      );
    },
  };

  async function drain(graceMs: number): Promise<void> {
    logger.info({ open_tunnels: tunnels.size, grace_ms: graceMs }, LogEvent.shutdownStarted);
    server.close();
    http2.closeSessions();
    // Connections that have not asked for a tunnel yet have nothing to finish.
    for (const socket of sockets) {
      const info = connectionInfoOf(socket);
      if (info === undefined || neverUsed(info)) socket.destroy();
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'deadline'>((resolve) => {
      timer = setTimeout(() => resolve('deadline'), graceMs);
    });
    const result = await Promise.race([tunnels.whenEmpty().then(() => 'drained' as const), deadline]);
    clearTimeout(timer);
    const leftOpen = tunnels.size;
    tunnels.closeAll('shutdown');
    await live.stop();
    limiter.stop();
    await budgets?.stop();
    http2.destroySessions();
    for (const socket of sockets) socket.destroy();
    // Closing the engine clears its caches (a cached allow must not outlive the pool) and ends the pool.
    await policy.close(2).catch(() => undefined);
    audit.flush();
    logger.info({ result, tunnels_cut: result === 'deadline' ? leftOpen : 0 }, LogEvent.shutdownComplete);
  }
}

function track(sockets: Set<TLSSocket>, socket: TLSSocket): void {
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
}
