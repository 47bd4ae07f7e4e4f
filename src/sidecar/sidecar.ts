import type { Server } from 'node:http';
import type { Logger } from '../observability/logger.js';
import type { AgentCredentials } from './agent-credentials.js';
import type { SidecarConfig } from './config.js';
import { SidecarEvent } from './events.js';
import { GatewayConnection } from './gateway-connection.js';
import { listenTcp, listenUnix } from './listen.js';
import { createLocalProxy } from './local-proxy.js';
import { LocalTunnels } from './local-tunnels.js';
import { proxyAuthChecker } from './proxy-auth.js';
import { startSidecarTelemetry } from './telemetry.js';

export interface RunningSidecar {
  /** The bound TCP address (`host:port`), when listening on TCP. */
  readonly listenAddr: string | undefined;
  /** Stop accepting, let open tunnels finish for up to `graceMs`, then close everything. */
  shutdown(graceMs: number): Promise<void>;
}

/** Composition root of the sidecar: one gateway connection, one proxy, its listeners. */
export async function startSidecar(
  config: SidecarConfig,
  credentials: AgentCredentials,
  logger: Logger,
): Promise<RunningSidecar> {
  const gateway = new GatewayConnection({
    gateway: config.gateway,
    serverName: config.gatewayServerName,
    secureContext: credentials.secureContext,
    connectTimeoutMs: config.connectTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    keepaliveIntervalMs: config.keepaliveIntervalMs,
    keepaliveTimeoutMs: config.keepaliveTimeoutMs,
    reconnectMaxMs: config.reconnectMaxMs,
    logger,
  });
  const tunnels = new LocalTunnels(logger, config.tunnelIdleTimeoutMs);
  let telemetry: Awaited<ReturnType<typeof startSidecarTelemetry>>;
  try {
    telemetry = await startSidecarTelemetry(config, logger);
  } catch (error) {
    gateway.destroy();
    throw error;
  }
  const deps = {
    gateway,
    tunnels,
    authorized: proxyAuthChecker(config.proxyCredential),
    identity: credentials.identity,
    logger,
    events: telemetry.events,
  };
  const servers: Server[] = [];
  try {
    let listenAddr: string | undefined;
    if (config.listen !== undefined) {
      const server = createLocalProxy(deps);
      servers.push(server);
      listenAddr = await listenTcp(server, config.listen);
    }
    if (config.unixSocket !== undefined) {
      const server = createLocalProxy(deps);
      servers.push(server);
      await listenUnix(server, config.unixSocket.path, config.unixSocket.mode);
    }
    logger.info(
      {
        listen_addr: listenAddr,
        unix_socket_path: config.unixSocket?.path,
        gateway_addr: config.gateway.authority,
        source_identity: credentials.identity ?? undefined,
        proxy_auth: config.proxyCredential !== undefined,
      },
      SidecarEvent.listening,
    );
    return {
      listenAddr,
      async shutdown(graceMs: number) {
        logger.info({ open_tunnels: tunnels.size, grace_ms: graceMs }, SidecarEvent.shutdownStarted);
        for (const server of servers) {
          server.close();
          server.closeIdleConnections();
        }
        const finished = await tunnels.waitForIdle(graceMs);
        const cut = tunnels.size;
        if (!finished) tunnels.closeAll();
        gateway.destroy();
        for (const server of servers) server.closeAllConnections();
        await telemetry.stop();
        logger.info({ tunnels_cut: cut }, SidecarEvent.shutdownComplete);
      },
    };
  } catch (error) {
    for (const server of servers) server.close();
    gateway.destroy();
    await telemetry.stop();
    throw error;
  }
}
