import type { GatewayConfig } from '../config/schema.js';
import { LiveCheck } from '../livecheck/live-check.js';
import type { PolicyEngine } from '../policy/decision.js';
import type { OpenTunnels } from '../proxy/open-tunnels.js';
import { RegistryChangeListener } from '../registry/change-listener.js';
import type { RegistryHealth } from '../registry/registry-health.js';
import type { GatewayEvents } from '../session/events.js';

/** How often the listener's connection proves it is alive (and a missing extension is looked for again). */
const LISTENER_HEARTBEAT_MS = 2000;

export interface LiveAuthorization {
  readonly check: LiveCheck;
  readonly listener: RegistryChangeListener;
  stop(): Promise<void>;
}

/**
 * Wires the registry's change notifications to the live check of open tunnels and starts both: from here
 * on every open tunnel is re-validated (README, "Live authorization").
 */
export function startLiveAuthorization(deps: {
  readonly databaseUrl: string;
  readonly config: GatewayConfig;
  readonly policy: PolicyEngine;
  readonly tunnels: OpenTunnels;
  readonly events: GatewayEvents;
  /** The listener's heartbeat also tells the registry's health (so readiness follows it without traffic). */
  readonly health?: RegistryHealth;
}): LiveAuthorization {
  const { config } = deps;
  let check: LiveCheck | undefined;
  const listener = new RegistryChangeListener(
    {
      databaseUrl: deps.databaseUrl,
      policy: config.policy,
      heartbeatMs: LISTENER_HEARTBEAT_MS,
      ...(deps.health ? { observer: deps.health } : {}),
    },
    {
      changed: () => check?.changed(),
      listening: () => check?.listening(),
      down: () => check?.down(),
    },
  );
  check = new LiveCheck(
    {
      policy: deps.policy,
      tunnels: deps.tunnels,
      events: deps.events,
      intervalMs: config.policy.revalidation_interval_ms,
      graceMs: config.policy.revalidation_grace_s * 1000,
    },
    listener,
  );
  const live = check;
  live.start();
  listener.start();
  return {
    check: live,
    listener,
    async stop() {
      live.stop();
      await listener.stop();
    },
  };
}
