import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import { connectionInfoOf, neverUsed } from '../proxy/connection-info.js';
import type { OpenTunnels } from '../proxy/open-tunnels.js';
import type { Fronts } from './front-wiring.js';
import type { GatewayStatus } from './status.js';

/** What shutdown stops, in order, once the tunnels are done or the grace is over. */
export interface DrainDeps {
  readonly logger: Logger;
  readonly status: GatewayStatus;
  readonly fronts: Fronts;
  readonly tunnels: OpenTunnels;
  /** Everything else to stop after the tunnels (live check, admin listener, limiter, registry, logs). */
  readonly stop: ReadonlyArray<() => void | Promise<void>>;
  /** server.drain_delay_s in ms: how long readiness is false before the listener closes. */
  readonly drainDelayMs: number;
}

/**
 * SIGINT/SIGTERM: readiness goes false; after `drainDelayMs` (load balancers notice the 503 and stop
 * sending agents, which are still served meanwhile) the listener closes, HTTP/2 sessions get GOAWAY,
 * connections that never asked for a tunnel are dropped; open tunnels may finish within `graceMs`, then
 * the rest are cut.
 */
export async function drain(deps: DrainDeps, graceMs: number): Promise<void> {
  const { logger, status, fronts, tunnels } = deps;
  logger.info(
    { open_tunnels: tunnels.size, grace_ms: graceMs, drain_delay_ms: deps.drainDelayMs },
    LogEvent.shutdownStarted,
  );
  // Readiness goes false first, so a load balancer stops sending agents before the listener closes.
  status.draining = true;
  if (deps.drainDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, deps.drainDelayMs));
  fronts.server.close();
  status.listening = false;
  fronts.http2.closeSessions();
  // Connections that have not asked for a tunnel yet have nothing to finish.
  for (const socket of fronts.sockets) {
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
  fronts.http2.destroySessions();
  for (const socket of fronts.sockets) socket.destroy();
  for (const stop of deps.stop) await stop();
  logger.info({ result, tunnels_cut: result === 'deadline' ? leftOpen : 0 }, LogEvent.shutdownComplete);
}
