import type { GatewayConfig } from '../config/schema.js';

/** The part of the config a running gateway applies on SIGHUP; everything else needs a restart. */
export const RELOADABLE_TABLES: ReadonlySet<string> = new Set(['rate_limit']);

/** Keys inside a reloadable table that still need a restart: where the buckets live is chosen at start. */
const RESTART_KEYS_IN_RELOADABLE: readonly (readonly [string, string])[] = [['rate_limit', 'shared']];

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
  for (const [table, key] of RESTART_KEYS_IN_RELOADABLE) {
    const a = (running as Record<string, Record<string, unknown> | undefined>)[table]?.[key];
    const b = (next as Record<string, Record<string, unknown> | undefined>)[table]?.[key];
    if ((a ?? false) !== (b ?? false)) changed.push(`${table}.${key}`);
  }
  return changed.sort();
}
