import type { LoadedConfig } from '../config/load.js';
import type { LookupFn } from '../egress/resolve.js';
import { createPolicyEngine, type PolicyEngine } from '../policy/engine.js';
import { openRegistry, registryTcpEndpoints } from '../registry/connect.js';
import { type GateObserver, isTimeoutError, QueryGate } from '../registry/query-gate.js';
import { describeRegistryError, isOutage, RegistryHealth } from '../registry/registry-health.js';
import { assertSchemaVersion, SchemaVersionError } from '../registry/schema-version.js';
import type { GatewayEvents } from '../session/events.js';
import { resolveRegistryEndpoints } from './own-addresses.js';

export type RegistryEndpoints = Awaited<ReturnType<typeof resolveRegistryEndpoints>>;

export interface RegistrySide {
  readonly policy: PolicyEngine;
  readonly health: RegistryHealth;
  readonly gate: QueryGate;
  /**
   * Runs `protect` with the registry's endpoints once they are known and the schema is verified (now, if
   * it already is), and only then lets decisions query the registry: no CONNECT is decided before the
   * egress guard keeps tunnels away from the registry.
   */
  admit(protect: (endpoints: RegistryEndpoints) => void): void;
  /**
   * Resolves if the registry, once it answers after an outage at start, is found at the wrong schema or
   * refuses the gateway (a password or a grant): the gateway then stops with exit code 1.
   */
  readonly fatal: Promise<Error>;
  close(timeoutS: number): Promise<void>;
}

/** Between attempts to reach a registry that was down at start. */
const RETRY_MS = 1000;

const NOT_VERIFIED =
  'the registry has not yet been checked to be at the schema this gateway reads (it did not answer)';

/**
 * The registry pool, its query gate and health (published as `registryStatus`, and each query as
 * `registryQuery`), and the policy engine over it.
 *
 * At start the registry's host is resolved (tunnels must be kept away from it) and its schema version
 * checked. A registry at the wrong schema, or one that refuses the gateway's credentials or grants,
 * fails the start (this throws). A registry that does not answer (down, unreachable, or its host name
 * not resolving: DNS down is treated as the registry being down, since the gateway can neither reach nor
 * protect it) does not: the gateway starts unready, denies every CONNECT with `policy_error` (the gate
 * refuses queries until the check passes), logs `registry unavailable`, and keeps trying every second;
 * it becomes ready when the check passes.
 */
export async function openRegistrySide(
  loaded: LoadedConfig,
  events: GatewayEvents,
  lookup: LookupFn | undefined,
): Promise<RegistrySide> {
  const { config } = loaded;
  const sql = openRegistry(loaded.databaseUrl, config.policy, { applicationName: 'agent-gateway' });
  const health = new RegistryHealth((available, error) =>
    events.emit('registryStatus', { available, error }),
  );
  const observer: GateObserver = {
    settled(ok, error, durationMs) {
      health.settled(ok, error);
      const outcome = ok ? 'ok' : isTimeoutError(error) ? 'timeout' : 'error';
      events.emit('registryQuery', { outcome, durationMs });
    },
  };
  const gate = new QueryGate(config.policy.max_connections, observer);
  gate.suspend(NOT_VERIFIED);
  const policy = createPolicyEngine(sql, {
    acquireTimeoutMs: config.policy.pool_acquire_timeout_ms,
    queryTimeoutMs: config.policy.query_timeout_ms,
    decisionCacheMs: config.policy.decision_cache_ms,
    gate,
  });
  // Closing the engine clears its caches (a cached allow must not outlive the pool) and ends the pool.
  let closed = false;
  const close = async (timeoutS: number) => {
    closed = true;
    if (retry !== undefined) clearTimeout(retry);
    await policy.close(timeoutS).catch(() => undefined);
  };

  const check = async (): Promise<RegistryEndpoints> => {
    const endpoints = await resolveRegistryEndpoints(registryTcpEndpoints(sql), {
      timeoutMs: config.egress.connect_timeout_ms,
      ...(lookup ? { lookup } : {}),
    });
    await assertSchemaVersion(sql);
    return endpoints;
  };

  let endpoints: RegistryEndpoints | undefined;
  let protect: ((endpoints: RegistryEndpoints) => void) | undefined;
  let retry: NodeJS.Timeout | undefined;
  let reportFatal: (error: Error) => void = () => {};
  const fatal = new Promise<Error>((resolve) => {
    reportFatal = resolve;
  });
  const open = () => {
    if (endpoints === undefined || protect === undefined || closed) return;
    protect(endpoints);
    health.verified();
    gate.resume();
  };
  const verifiedNow = (found: RegistryEndpoints) => {
    endpoints = found;
    // The check's queries answered: the registry is available (logged if it was not).
    health.settled(true, undefined);
    open();
  };
  const attempt = async (): Promise<void> => {
    retry = undefined;
    if (closed) return;
    try {
      verifiedNow(await check());
    } catch (err) {
      if (closed) return;
      if (!waitable(err)) {
        reportFatal(err instanceof Error ? err : new Error(describeRegistryError(err)));
        return;
      }
      health.settled(false, err);
      retry = setTimeout(() => void attempt(), RETRY_MS);
    }
  };

  try {
    verifiedNow(await check());
  } catch (err) {
    if (!waitable(err)) {
      await close(1);
      throw err;
    }
    // Down at start: start unready and keep trying (logged as `registry unavailable`).
    health.settled(false, err);
    retry = setTimeout(() => void attempt(), RETRY_MS);
  }
  return {
    policy,
    health,
    gate,
    admit(fn) {
      protect = fn;
      open();
    },
    fatal,
    close,
  };
}

/** An outage is waited out; a wrong schema, a refused password or a missing grant is not. */
function waitable(err: unknown): boolean {
  return !(err instanceof SchemaVersionError) && isOutage(err);
}
