import postgres from 'postgres';
import type { PolicyConfig } from '../config/schema.js';

export interface OpenRegistryOptions {
  /** Server NOTICE messages; silenced by default (postgres.js would print them to the console). */
  onNotice?: (notice: postgres.Notice) => void;
  /** Shown in pg_stat_activity, so operators can tell the gateway's sessions apart. */
  applicationName?: string;
}

/**
 * Seconds before reopening a connection that failed. postgres.js waits (0.5-1) x min(3^failures / 100, 20)
 * s by default, so after an outage of a few seconds a connection could sit out up to 20 s after the
 * registry was back. Reconnect attempts are one small packet each: retry at most every second.
 */
export function reconnectBackoff(retries: number): number {
  return Math.min(1, 0.05 * 2 ** retries);
}

/**
 * The gateway's connection pool to the registry. Limits come from `[policy]`: the server enforces the
 * query timeout itself (statement_timeout), so a slow query stops using server resources when we give up.
 */
export function openRegistry(
  databaseUrl: string,
  policy: Pick<PolicyConfig, 'max_connections' | 'connect_timeout_ms' | 'query_timeout_ms'>,
  opts?: OpenRegistryOptions,
): postgres.Sql {
  return postgres(databaseUrl, {
    max: policy.max_connections,
    // postgres.js counts whole seconds; rounding down could turn 500 ms into "no timeout" (0).
    connect_timeout: Math.max(1, Math.ceil(policy.connect_timeout_ms / 1000)),
    connection: {
      statement_timeout: policy.query_timeout_ms,
      application_name: opts?.applicationName ?? 'agent-gateway',
      // The CONNECT lookup is all equalities on indexed columns, so the generic plan is the custom plan.
      // Left to its default PostgreSQL kept choosing custom plans here, i.e. planning again on every
      // execution (planning 0.44 ms, executing 0.10 ms); forcing the generic plan took decide() from p50
      // 0.40 to 0.19 ms, p99 1.9 to 0.67 ms. Needs PostgreSQL 12+; a pooler in front must pass it on.
      plan_cache_mode: 'force_generic_plan',
    },
    onnotice: opts?.onNotice ?? (() => {}),
    backoff: reconnectBackoff,
    // The per-CONNECT lookup is one statement: parse and plan it once per connection.
    prepare: true,
  });
}

/**
 * The registry's TCP endpoints as the driver parsed them from the URL (several hosts are allowed), so that
 * the gateway can keep tunnels away from them; none for a Unix-socket registry.
 */
export function registryTcpEndpoints(sql: postgres.Sql): { host: string; port: number }[] {
  const { host, port, path } = sql.options as { host: string[]; port: number[]; path?: string | false };
  if (typeof path === 'string' && path !== '') return [];
  return host.map((h, i) => ({ host: h, port: port[i] ?? port[0] ?? 5432 }));
}
