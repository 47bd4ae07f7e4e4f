import type { GatewayConfig } from '../config/schema.js';

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
