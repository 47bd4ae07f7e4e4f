import type { LoadedConfig } from '../config/load.js';
import type { GatewayConfig } from '../config/schema.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { RateLimiter } from '../ratelimit/limiter.js';
import { rateLimitSettings } from '../ratelimit/settings.js';

/** The part of the config a running gateway applies on SIGHUP; everything else needs a restart. */
export const RELOADABLE_TABLES: ReadonlySet<string> = new Set(['rate_limit']);

/**
 * Keys (`server.listen_addr`, `policy.database_url`, ...) whose value differs between the running config
 * and a newly read one but that only a restart applies: listeners, TLS material, the registry pool and
 * the egress rules are built once at start. Listed so the operator learns that the edit did not take.
 */
export function changesNeedingRestart(running: GatewayConfig, next: GatewayConfig): string[] {
  const changed: string[] = [];
  const tables = new Set([...Object.keys(running), ...Object.keys(next)]);
  for (const table of tables) {
    if (RELOADABLE_TABLES.has(table)) continue;
    const a = (running as Record<string, Record<string, unknown> | undefined>)[table] ?? {};
    const b = (next as Record<string, Record<string, unknown> | undefined>)[table] ?? {};
    for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) changed.push(`${table}.${key}`);
    }
  }
  return changed.sort();
}

/**
 * SIGHUP: applies what can be applied of a newly read config to the running gateway and logs what was
 * applied and what needs a restart. Returns the config now in force.
 */
export function applyReload(
  running: GatewayConfig,
  next: LoadedConfig,
  deps: { readonly limiter: RateLimiter; readonly logger: Logger },
): GatewayConfig {
  const ignored = changesNeedingRestart(running, next.config);
  const applied = changedKeys('rate_limit', running.rate_limit, next.config.rate_limit);
  deps.limiter.update(rateLimitSettings(next.config.rate_limit));
  const rl = next.config.rate_limit;
  const limits = rateLimitSettings(rl).defaults;
  deps.logger[ignored.length > 0 ? 'warn' : 'info'](
    {
      config_path: next.path,
      applied: applied.length > 0 ? applied : undefined,
      bytes_per_second: rl.bytes_per_second,
      burst_bytes: rl.burst_bytes,
      download_bytes_per_second: rl.download_bytes_per_second ?? 0,
      total_bytes_per_second: rl.total_bytes_per_second ?? 0,
      max_tunnels_per_identity: limits.maxTunnels,
      identity_overrides: Object.keys(rl.identities ?? {}).length,
      ignored_until_restart: ignored.length > 0 ? ignored : undefined,
    },
    LogEvent.configReloaded,
  );
  return { ...running, rate_limit: next.config.rate_limit };
}

/** `table.key` for every key whose value differs (nested tables compared as JSON). */
function changedKeys(table: string, a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys]
    .filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]))
    .map((k) => `${table}.${k}`)
    .sort();
}
