import type { LoadedConfig } from '../config/load.js';
import type { LookupFn } from '../egress/resolve.js';
import { createPolicyEngine, type PolicyEngine } from '../policy/engine.js';
import { openRegistry, registryTcpEndpoints } from '../registry/connect.js';
import { QueryGate } from '../registry/query-gate.js';
import { RegistryHealth } from '../registry/registry-health.js';
import { assertSchemaVersion } from '../registry/schema-version.js';
import type { GatewayEvents } from '../session/events.js';
import { resolveRegistryEndpoints } from './own-addresses.js';

export interface RegistrySide {
  readonly policy: PolicyEngine;
  readonly health: RegistryHealth;
  /** The registry's TCP endpoints, resolved once: no tunnel may reach them (own-addresses.ts). */
  readonly endpoints: Awaited<ReturnType<typeof resolveRegistryEndpoints>>;
  close(timeoutS: number): Promise<void>;
}

/**
 * The registry pool, checked to be at the schema this gateway reads, with its query gate and health
 * (published as `registryStatus`), and the policy engine over it. Throws (after closing the pool) when
 * the registry is at the wrong schema or its host does not resolve.
 */
export async function openRegistrySide(
  loaded: LoadedConfig,
  events: GatewayEvents,
  lookup: LookupFn | undefined,
): Promise<RegistrySide> {
  const { config } = loaded;
  const sql = openRegistry(loaded.databaseUrl, config.policy, { applicationName: 'agent-gateway' });
  try {
    await assertSchemaVersion(sql);
  } catch (err) {
    await sql.end({ timeout: 1 });
    throw err;
  }
  const health = new RegistryHealth((available, error) =>
    events.emit('registryStatus', { available, error }),
  );
  const policy = createPolicyEngine(sql, {
    acquireTimeoutMs: config.policy.pool_acquire_timeout_ms,
    queryTimeoutMs: config.policy.query_timeout_ms,
    decisionCacheMs: config.policy.decision_cache_ms,
    gate: new QueryGate(config.policy.max_connections, health),
  });
  try {
    const endpoints = await resolveRegistryEndpoints(registryTcpEndpoints(sql), {
      timeoutMs: config.egress.connect_timeout_ms,
      ...(lookup ? { lookup } : {}),
    });
    // Closing the engine clears its caches (a cached allow must not outlive the pool) and ends the pool.
    return { policy, health, endpoints, close: (timeoutS) => policy.close(timeoutS).catch(() => undefined) };
  } catch (err) {
    await policy.close(1).catch(() => undefined);
    throw err;
  }
}
