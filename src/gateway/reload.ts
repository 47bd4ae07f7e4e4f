import type { LoadedConfig } from '../config/load.js';
import { rateLimitSettings } from '../config/rate-limit.js';
import type { GatewayConfig } from '../config/schema.js';
import { readTlsMaterial, type TlsFiles, type TlsMaterial } from '../config/tls-material.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { RateLimiter } from '../ratelimit/limiter.js';

/** The tables a running gateway applies whole on SIGHUP. */
export const RELOADABLE_TABLES: ReadonlySet<string> = new Set(['rate_limit']);

/** Keys inside a reloadable table that still need a restart: where the buckets live is chosen at start. */
const RESTART_KEYS_IN_RELOADABLE: readonly (readonly [string, string])[] = [['rate_limit', 'shared']];

/**
 * Single keys applied on SIGHUP: the certificate and key files. They are re-read on every SIGHUP, even
 * when the paths did not change, since a rotation usually replaces the files in place. The admin
 * listener's only when it already runs with TLS (turning TLS on or off needs a restart).
 */
export const RELOADABLE_CERTIFICATE_KEYS = {
  server: ['server.tls_cert_path', 'server.tls_key_path'],
  admin: ['admin.tls_cert_path', 'admin.tls_key_path'],
} as const;

/** A listener whose certificate SIGHUP can replace (the agents' port, the admin listener). */
export interface CertificateSlot {
  readonly certificate: TlsMaterial | undefined;
  setCertificate(material: TlsMaterial): void;
}

export interface ReloadDeps {
  readonly limiter: RateLimiter;
  readonly logger: Logger;
  readonly server: CertificateSlot;
  /** The admin listener, when it runs with TLS. */
  readonly admin: CertificateSlot | undefined;
}

/**
 * Keys (`server.listen_addr`, `policy.database_url`, ...) whose value differs between the running config
 * and a newly read one but that only a restart applies: listeners, the registry pool and the egress rules
 * are built once at start. Listed so the operator learns that the edit did not take. `reloadable` names
 * the single keys that are applied (see RELOADABLE_CERTIFICATE_KEYS).
 */
export function changesNeedingRestart(
  running: GatewayConfig,
  next: GatewayConfig,
  reloadable: ReadonlySet<string> = new Set(RELOADABLE_CERTIFICATE_KEYS.server),
): string[] {
  const changed: string[] = [];
  const tables = new Set([...Object.keys(running), ...Object.keys(next)]);
  for (const table of tables) {
    if (RELOADABLE_TABLES.has(table)) continue;
    const a = (running as Record<string, Record<string, unknown> | undefined>)[table] ?? {};
    const b = (next as Record<string, Record<string, unknown> | undefined>)[table] ?? {};
    for (const key of changedKeys(table, a, b)) if (!reloadable.has(key)) changed.push(key);
  }
  for (const [table, key] of RESTART_KEYS_IN_RELOADABLE) {
    const a = (running as Record<string, Record<string, unknown> | undefined>)[table]?.[key];
    const b = (next as Record<string, Record<string, unknown> | undefined>)[table]?.[key];
    if ((a ?? false) !== (b ?? false)) changed.push(`${table}.${key}`);
  }
  return changed.sort();
}

/**
 * SIGHUP: applies what can be applied of a newly read config to the running gateway and logs what was
 * applied and what needs a restart. The certificates are read and checked first (tls-material.ts, the
 * check `check-config` and the start use); if one is unusable nothing at all is applied, the running
 * certificates and limits stay, and `config reload failed` names the problems. Returns the config now
 * in force.
 */
export async function applyReload(
  running: GatewayConfig,
  next: LoadedConfig,
  deps: ReloadDeps,
): Promise<GatewayConfig> {
  const { logger } = deps;
  const { admin: nextAdmin } = next.config;
  const adminFiles =
    deps.admin !== undefined && nextAdmin.tls_cert_path !== undefined && nextAdmin.tls_key_path !== undefined
      ? { tls_cert_path: nextAdmin.tls_cert_path, tls_key_path: nextAdmin.tls_key_path }
      : undefined;
  const [server, admin] = await Promise.all([
    readTlsMaterial(next.config.server),
    adminFiles === undefined ? undefined : readTlsMaterial(adminFiles, 'admin'),
  ]);
  const problems = [server, admin].flatMap((r) => (r === undefined || r.ok ? [] : r.problems));
  if (!server.ok || (admin !== undefined && !admin.ok)) {
    logger.error({ config_path: next.path, problems }, LogEvent.configReloadFailed);
    return running;
  }
  let serverCert: boolean;
  let adminCert: boolean | undefined;
  try {
    // Cannot fail in practice: readTlsMaterial built a context from these very bytes. Caught so that
    // a surprise leaves the listeners as they were rather than reaching the signal handler.
    adminCert =
      admin === undefined || deps.admin === undefined ? undefined : install(deps.admin, admin.material);
    serverCert = install(deps.server, server.material);
  } catch (error) {
    logger.error(
      { config_path: next.path, problems: [(error as Error).message] },
      LogEvent.configReloadFailed,
    );
    return running;
  }

  const reloadable = new Set<string>([
    ...RELOADABLE_CERTIFICATE_KEYS.server,
    ...(adminFiles === undefined ? [] : RELOADABLE_CERTIFICATE_KEYS.admin),
  ]);
  const ignored = changesNeedingRestart(running, next.config, reloadable);
  const applied = [
    ...changedKeys('rate_limit', running.rate_limit, next.config.rate_limit),
    ...changedKeys('server', pick(running.server), pick(next.config.server)),
    ...(adminFiles === undefined ? [] : changedKeys('admin', pick(running.admin), pick(adminFiles))),
  ].sort();
  deps.limiter.update(rateLimitSettings(next.config.rate_limit));
  const rl = next.config.rate_limit;
  const limits = rateLimitSettings(rl).defaults;
  logger[ignored.length > 0 ? 'warn' : 'info'](
    {
      config_path: next.path,
      applied: applied.length > 0 ? applied : undefined,
      bytes_per_second: rl.bytes_per_second,
      burst_bytes: rl.burst_bytes,
      download_bytes_per_second: rl.download_bytes_per_second ?? 0,
      total_bytes_per_second: rl.total_bytes_per_second ?? 0,
      max_tunnels_per_identity: limits.maxTunnels,
      identity_overrides: Object.keys(rl.identities ?? {}).length,
      tls_cert_sha256: server.material.leafSha256,
      tls_cert_not_after: server.material.leafNotAfter,
      tls_cert_replaced: serverCert,
      admin_tls_cert_sha256: admin?.ok ? admin.material.leafSha256 : undefined,
      admin_tls_cert_replaced: adminCert,
      ignored_until_restart: ignored.length > 0 ? ignored : undefined,
    },
    LogEvent.configReloaded,
  );
  return {
    ...running,
    rate_limit: next.config.rate_limit,
    server: { ...running.server, ...pick(next.config.server) },
    admin: adminFiles === undefined ? running.admin : { ...running.admin, ...adminFiles },
  };
}

/** Installs `material` unless it is byte for byte what the listener has; true when it was replaced. */
function install(slot: CertificateSlot, material: TlsMaterial): boolean {
  const current = slot.certificate;
  const same = current?.certPem.equals(material.certPem) && current.keyPem.equals(material.keyPem);
  if (same) return false;
  slot.setCertificate(material);
  return true;
}

function pick(files: Partial<TlsFiles>): TlsFiles {
  return { tls_cert_path: files.tls_cert_path ?? '', tls_key_path: files.tls_key_path ?? '' };
}

/** `table.key` for every key whose value differs (nested tables compared as JSON). */
function changedKeys(table: string, a: object, b: object): string[] {
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const keys = new Set([...Object.keys(x), ...Object.keys(y)]);
  return [...keys]
    .filter((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]))
    .map((k) => `${table}.${k}`)
    .sort();
}
