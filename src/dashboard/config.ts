import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { isLoopback, token as tokenFromEnv } from '../config/admin-settings.js';
import { postgresUrlProblem } from '../config/database-url.js';
import { ConfigError, formatKeyPath } from '../config/errors.js';
import { describeFsError } from '../config/files.js';
import { ListenAddrError, parseListenAddr } from '../config/listen-addr.js';
import { parseTomlText, readConfigFile } from '../config/load.js';
import { readTlsMaterial, type TlsMaterial } from '../config/tls-material.js';
import { issueToProblems } from '../config/zod-problems.js';

/**
 * `agent-gateway dashboard --config FILE`: its own TOML file, strict like the gateway's (an unknown key is
 * an error). Secrets (tokens, the registry URL's password) come from environment variables named here.
 */
const positiveInt = () =>
  z.number({ error: 'must be a number' }).int('must be a whole number').positive('must be > 0');
const envName = () => z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name');

const dashboardTable = z.strictObject({
  /** Where browsers reach it: loopback for plain HTTP, anything else only with TLS. */
  listen_addr: z.string().min(1),
  tls_cert_path: z.string().min(1).optional(),
  tls_key_path: z.string().min(1).optional(),
  /** The admin login (closes tunnels, revokes); required. */
  token_env: envName().default('AGENT_GATEWAY_DASHBOARD_TOKEN'),
  /** A read-only login (sees everything, acts on nothing). */
  readonly_token_env: envName().optional(),
  /** OTLP/HTTP ingest at /v1/traces and /v1/logs: off unless this token is set (the collector sends it). */
  ingest_token_env: envName().optional(),
  /** A login lasts at most this long (then log in again). */
  session_ttl_s: positiveInt()
    .max(7 * 86_400)
    .default(12 * 3600),
  /** Decisions and other records kept in memory for the UI (all gateways together). */
  history_records: positiveInt().max(1_000_000).default(20_000),
  /** How often each gateway's tunnels are sampled (byte counters, rates). */
  sample_interval_ms: positiveInt().min(250).max(60_000).default(1000),
  /** How much of the per-identity bandwidth series is kept. */
  bandwidth_window_s: positiveInt().min(10).max(3600).default(600),
});

const registryTable = z.strictObject({
  database_url: z.string().min(1).optional(),
  database_url_env: envName().optional(),
  connect_timeout_ms: positiveInt().default(5000),
  query_timeout_ms: positiveInt().default(5000),
});

const gatewayEntry = z.strictObject({
  /** How the dashboard names it; unique. */
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 letters, digits, ".", "_" or "-"'),
  /** The gateway's `[admin] listen_addr` as a URL: http://127.0.0.1:9443 or https://… */
  admin_url: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }),
  /** Variable holding that gateway's admin token (closes tunnels) or read-only token (watches only). */
  token_env: envName(),
  /** CA certificate(s) of an https admin listener with a private CA. */
  ca_path: z.string().min(1).optional(),
});

const operatorEntry = z.strictObject({
  /** For the audit trail. */
  name: z.string().regex(/^[\x20-\x7e]{1,64}$/, 'must be 1-64 printable characters'),
  /** The operator key's fingerprint, as `agent-gateway agent create` prints it: sha256:<64 hex digits>. */
  spki_sha256: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256: and 64 lower-case hex digits'),
  role: z.enum(['read', 'admin']),
});

export const dashboardConfigSchema = z.strictObject({
  dashboard: dashboardTable,
  registry: registryTable,
  gateways: z.array(gatewayEntry).default([]),
  /** Operator client certificates that log in by themselves (TLS only). */
  operators: z.array(operatorEntry).default([]),
});

export type DashboardConfig = z.infer<typeof dashboardConfigSchema>;

export interface DashboardGateway {
  readonly name: string;
  readonly adminUrl: URL;
  /** Secret. */
  readonly token: string;
  readonly ca: Buffer | undefined;
}

/** The validated config with its secrets resolved from the environment. */
export interface LoadedDashboardConfig {
  readonly config: DashboardConfig;
  readonly listen: { readonly host: string; readonly port: number };
  readonly tls: TlsMaterial | undefined;
  /** Secret. */
  readonly databaseUrl: string;
  readonly tokens: { readonly admin: string; readonly readonly: string | undefined };
  readonly ingestToken: string | undefined;
  readonly gateways: readonly DashboardGateway[];
  readonly operators: ReadonlyArray<{ name: string; spkiSha256: string; role: 'read' | 'admin' }>;
}

export async function loadDashboardConfig(
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<LoadedDashboardConfig> {
  const raw = parseTomlText(await readConfigFile(path), path);
  const parsed = dashboardConfigSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) throw new ConfigError(parsed.error.issues.flatMap(issueToProblems), path);
  const config = parsed.data;
  const problems: string[] = [];
  const add = (key: string, message: string) => problems.push(`${key}: ${message}`);
  const d = config.dashboard;

  let listen = { host: '127.0.0.1', port: 0 };
  try {
    listen = parseListenAddr(d.listen_addr);
    if (d.tls_cert_path === undefined && !isLoopback(listen.host)) {
      add(
        'dashboard.listen_addr',
        `${d.listen_addr} is not a loopback address: plain HTTP is served on 127.0.0.1 or [::1] only; ` +
          'set dashboard.tls_cert_path and dashboard.tls_key_path to listen elsewhere',
      );
    }
  } catch (error) {
    if (!(error instanceof ListenAddrError)) throw error;
    add('dashboard.listen_addr', error.message);
  }
  let tls: TlsMaterial | undefined;
  if ((d.tls_cert_path === undefined) !== (d.tls_key_path === undefined)) {
    add('dashboard.tls_cert_path', 'set both dashboard.tls_cert_path and dashboard.tls_key_path, or neither');
  } else if (d.tls_cert_path !== undefined && d.tls_key_path !== undefined) {
    const read = await readTlsMaterial(
      { tls_cert_path: d.tls_cert_path, tls_key_path: d.tls_key_path },
      'dashboard',
    );
    if (read.ok) tls = read.material;
    else problems.push(...read.problems);
  }

  const admin = tokenFromEnv(d.token_env, 'dashboard.token_env', env, add);
  const readonly =
    d.readonly_token_env === undefined
      ? undefined
      : tokenFromEnv(d.readonly_token_env, 'dashboard.readonly_token_env', env, add);
  if (admin !== undefined && admin === readonly) {
    add('dashboard.readonly_token_env', 'the read-only token must differ from the admin token');
  }
  const ingestToken =
    d.ingest_token_env === undefined
      ? undefined
      : tokenFromEnv(d.ingest_token_env, 'dashboard.ingest_token_env', env, add);
  if (ingestToken !== undefined && (ingestToken === admin || ingestToken === readonly)) {
    add('dashboard.ingest_token_env', 'the ingest token must differ from the login tokens');
  }

  if (config.operators.length > 0 && d.tls_cert_path === undefined) {
    add(
      'operators',
      'operator certificates need TLS: set dashboard.tls_cert_path and dashboard.tls_key_path',
    );
  }
  const keys = new Set<string>();
  for (const [i, o] of config.operators.entries()) {
    if (keys.has(o.spki_sha256))
      add(formatKeyPath(['operators', i, 'spki_sha256']), 'this key is listed twice');
    keys.add(o.spki_sha256);
  }
  const databaseUrl = registryUrl(config.registry, env, add);
  const gateways: DashboardGateway[] = [];
  const names = new Set<string>();
  for (const [i, g] of config.gateways.entries()) {
    const key = formatKeyPath(['gateways', i]);
    // `dashboard` and `otlp:…` name the dashboard's own records and ingested ones: no gateway may pose as them.
    if (g.name === 'dashboard') {
      add(`${key}.name`, '"dashboard" names the dashboard\'s own records; choose another name');
    }
    if (names.has(g.name))
      add(`${key}.name`, `${JSON.stringify(g.name)} is used twice; give each gateway its own name`);
    names.add(g.name);
    const token = tokenFromEnv(g.token_env, `${key}.token_env`, env, add);
    let ca: Buffer | undefined;
    if (g.ca_path !== undefined) {
      try {
        ca = await readFile(g.ca_path);
      } catch (error) {
        add(`${key}.ca_path`, `cannot read ${g.ca_path}: ${describeFsError(error)}`);
      }
    }
    if (token !== undefined) gateways.push({ name: g.name, adminUrl: new URL(g.admin_url), token, ca });
  }
  if (problems.length > 0 || admin === undefined || databaseUrl === undefined) {
    throw new ConfigError(problems.length > 0 ? problems : ['dashboard.token_env: no admin token'], path);
  }
  const operators = config.operators.map((o) => ({ name: o.name, spkiSha256: o.spki_sha256, role: o.role }));
  return { config, listen, tls, databaseUrl, tokens: { admin, readonly }, ingestToken, gateways, operators };
}

function registryUrl(
  registry: DashboardConfig['registry'],
  env: NodeJS.ProcessEnv,
  add: (key: string, message: string) => void,
): string | undefined {
  if ((registry.database_url === undefined) === (registry.database_url_env === undefined)) {
    add('registry.database_url', 'set exactly one of registry.database_url and registry.database_url_env');
    return undefined;
  }
  const key = registry.database_url === undefined ? 'registry.database_url_env' : 'registry.database_url';
  const url = registry.database_url ?? env[registry.database_url_env ?? ''];
  if (url === undefined || url === '') {
    add(key, `environment variable ${registry.database_url_env} is not set or is empty`);
    return undefined;
  }
  const problem = postgresUrlProblem(url);
  if (problem !== undefined) add(key, problem);
  return problem === undefined ? url : undefined;
}
