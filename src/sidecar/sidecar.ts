import type { Server } from 'node:http';
import type { Logger } from '../observability/logger.js';
import { runningVersions } from '../version.js';
import type { AgentCredentials } from './agent-credentials.js';
import type { SidecarConfig } from './config.js';
import { SidecarEvent } from './events.js';
import { type CredentialSwitch, GatewayConnection } from './gateway-connection.js';
import { listenTcp, listenUnix } from './listen.js';
import { createLocalProxy } from './local-proxy.js';
import { LocalTunnels } from './local-tunnels.js';
import { proxyAuthChecker } from './proxy-auth.js';
import { startSidecarTelemetry } from './telemetry.js';

export interface RunningSidecar {
  /** The bound TCP address (`host:port`), when listening on TCP. */
  readonly listenAddr: string | undefined;
  /** The digest of the credentials presented now (AgentCredentials.digest). */
  readonly credentialsDigest: string;
  /**
   * SIGHUP: presents `next` from now on (a new gateway connection at once, see GatewayConnection); the
   * credentials they replace are closed once no connection uses them. The sidecar owns `next` now.
   */
  replaceCredentials(next: AgentCredentials): Promise<CredentialSwitch>;
  /** Stop accepting, let open tunnels finish for up to `graceMs`, then close everything (credentials too). */
  shutdown(graceMs: number): Promise<void>;
}

/**
 * Composition root of the sidecar: one gateway connection, one proxy, its listeners. From a successful
 * start on, the sidecar owns `credentials` (and those that replace them) and closes them.
 */
export async function startSidecar(
  config: SidecarConfig,
  initial: AgentCredentials,
  logger: Logger,
): Promise<RunningSidecar> {
  let credentials = initial;
  const retiring = new Set<Promise<void>>();
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
    // Read per tunnel: new credentials may carry another identity.
    get identity() {
      return credentials.identity;
    },
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
        ...runningVersions(),
      },
      SidecarEvent.listening,
    );
    return {
      listenAddr,
      get credentialsDigest() {
        return credentials.digest;
      },
      async replaceCredentials(next) {
        const old = credentials;
        credentials = next;
        const result = await gateway.replaceCredentials(next.secureContext);
        const released = gateway.whenUnused(old.secureContext).then(() => {
          old.close();
          retiring.delete(released);
        });
        retiring.add(released);
        return result;
      },
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
        await Promise.all(retiring);
        credentials.close();
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
