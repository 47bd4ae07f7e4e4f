import { readFile } from 'node:fs/promises';
import { parse as parseToml, TomlError } from 'smol-toml';
import { CidrError, parseCidr } from '../egress/cidr.js';
import { encodeOidContent, OidError } from '../identity/oid.js';
import { type AdminTokens, adminSettings } from './admin-settings.js';
import { postgresUrlProblem } from './database-url.js';
import { ConfigError, formatKeyPath } from './errors.js';
import { describeFsError, describePath } from './files.js';
import { ListenAddrError, parseListenAddr } from './listen-addr.js';
import { rateLimitProblems, workersProblem } from './rate-limit.js';
import { configSchema, EXACTLY_ONE_DATABASE_URL, type GatewayConfig } from './schema.js';
import { readTlsMaterial } from './tls-material.js';
import { issueToProblems } from './zod-problems.js';

export { describeFsError } from './files.js';

export interface LoadedConfig {
  readonly config: GatewayConfig;
  /** The registry URL, from `policy.database_url` or the variable named by `policy.database_url_env`. Secret. */
  readonly databaseUrl: string;
  /** DER content octets of `policy.client_ext_oid`, for matching certificate extensions byte for byte. */
  readonly identityOidContent: Buffer;
  /** The config file this came from, for messages. */
  readonly path: string;
  /** The admin listener's tokens, from the environment; undefined when `[admin] listen_addr` is unset. Secret. */
  readonly adminTokens: AdminTokens | undefined;
}

/**
 * Reads, parses and validates a config file, and checks the TLS certificate and key it names as the
 * listener will use them (readable, PEM, the right way round, belonging together).
 */
export async function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<LoadedConfig> {
  const text = await readConfigFile(path);
  const loaded = parseConfigText(text, path, env);
  const tls = await readTlsMaterial(loaded.config.server);
  const problems = tls.ok ? [] : [...tls.problems];
  const { admin } = loaded.config;
  if (
    admin.listen_addr !== undefined &&
    admin.tls_cert_path !== undefined &&
    admin.tls_key_path !== undefined
  ) {
    const adminTls = await readTlsMaterial(
      { tls_cert_path: admin.tls_cert_path, tls_key_path: admin.tls_key_path },
      'admin',
    );
    if (!adminTls.ok) problems.push(...adminTls.problems);
  }
  if (problems.length > 0) throw new ConfigError(problems, path);
  return loaded;
}

/**
 * Parses and validates config text without touching the file system: TOML syntax, then the schema, then
 * the checks that span keys or need other parsers. All problems found are reported together.
 */
export function parseConfigText(
  text: string,
  path: string,
  env: NodeJS.ProcessEnv = process.env,
): LoadedConfig {
  const raw = parseTomlText(text, path);
  const parsed = configSchema.safeParse(raw, { reportInput: true });
  const problems: string[] = [];
  const flagged = new Set<string>();
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(...issueToProblems(issue));
      flagged.add(formatKeyPath(issue.path));
    }
  }
  // On schema failure the cross-field checks still run on the raw document (each one only where the
  // value has the right type), so that, say, a bad CIDR is reported alongside a misspelt key.
  const cross = crossCheck(parsed.success ? parsed.data : raw, env);
  for (const problem of cross.problems) {
    const line = `${problem.key}: ${problem.message}`;
    // A key the schema already rejected gets no second, derived complaint.
    if (!flagged.has(problem.key) && !problems.includes(line)) problems.push(line);
  }
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems, path);
  if (cross.databaseUrl === undefined || cross.identityOidContent === undefined) {
    throw new Error('internal error: a valid configuration produced no database URL or identity OID');
  }
  return {
    config: parsed.data,
    databaseUrl: cross.databaseUrl,
    identityOidContent: cross.identityOidContent,
    path,
    adminTokens: cross.adminTokens,
  };
}

/** The text of a config file, or a ConfigError naming the path and what is wrong with it. */
export async function readConfigFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      [
        `cannot read the config file ${describePath(path)}: ${describeFsError(error)}; pass --config with a readable TOML file`,
      ],
      path,
    );
  }
}

/** TOML to plain data; a syntax error becomes a ConfigError with line and column, never quoting the file. */
export function parseTomlText(text: string, path: string): unknown {
  try {
    return parseToml(text);
  } catch (error) {
    if (!(error instanceof TomlError)) throw error;
    // Only the first line of smol-toml's message: the rest is a quote of the surrounding lines, which
    // may include a database URL with its password.
    const reason = (error.message.split('\n')[0] ?? '').replace(/^Invalid TOML document:\s*/, '');
    throw new ConfigError(
      [`TOML syntax error at line ${error.line}, column ${error.column}: ${reason}`],
      path,
    );
  }
}

interface Problem {
  readonly key: string;
  readonly message: string;
}

interface CrossCheckResult {
  readonly problems: Problem[];
  readonly databaseUrl: string | undefined;
  readonly identityOidContent: Buffer | undefined;
  readonly adminTokens: AdminTokens | undefined;
}

/** Checks that span keys or use other modules' parsers. `doc` is the validated config or the raw TOML. */
function crossCheck(doc: unknown, env: NodeJS.ProcessEnv): CrossCheckResult {
  const problems: Problem[] = [];
  const add = (key: string, message: string): void => {
    problems.push({ key, message });
  };

  const listenAddr = table(doc, 'server')?.['listen_addr'];
  if (typeof listenAddr === 'string' && listenAddr !== '') {
    try {
      parseListenAddr(listenAddr);
    } catch (error) {
      if (!(error instanceof ListenAddrError)) throw error;
      add('server.listen_addr', error.message);
    }
  }

  const policy = table(doc, 'policy');
  let databaseUrl: string | undefined;
  let identityOidContent: Buffer | undefined;
  if (policy !== undefined) {
    databaseUrl = resolveDatabaseUrl(policy, env, add);
    const oid = policy['client_ext_oid'];
    if (typeof oid === 'string') {
      try {
        identityOidContent = encodeOidContent(oid);
      } catch (error) {
        if (!(error instanceof OidError)) throw error;
        add('policy.client_ext_oid', error.message);
      }
    }
  }

  const egress = table(doc, 'egress');
  for (const key of ['allow_cidrs', 'deny_cidrs'] as const) {
    const entries = egress?.[key];
    if (!Array.isArray(entries)) continue;
    entries.forEach((entry: unknown, i) => {
      if (typeof entry !== 'string') return;
      try {
        parseCidr(entry);
      } catch (error) {
        if (!(error instanceof CidrError)) throw error;
        add(`egress.${key}[${i}]`, error.message);
      }
    });
  }

  for (const problem of rateLimitProblems(table(doc, 'rate_limit'))) add(problem.key, problem.message);
  const workers = table(doc, 'server')?.['workers'];
  if (typeof workers === 'number') {
    const problem = workersProblem(table(doc, 'rate_limit') ?? {}, workers);
    if (problem !== undefined) add('server.workers', problem);
  }
  const adminTokens = adminSettings(table(doc, 'admin'), env, add);

  return { problems, databaseUrl, identityOidContent, adminTokens };
}

/** Exactly one of `database_url` / `database_url_env`, resolved and checked to be a PostgreSQL URL. */
function resolveDatabaseUrl(
  policy: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
  add: (key: string, message: string) => void,
): string | undefined {
  const inline = policy['database_url'];
  const envName = policy['database_url_env'];
  if ((inline === undefined) === (envName === undefined)) {
    add('policy.database_url', EXACTLY_ONE_DATABASE_URL);
    return undefined;
  }
  if (typeof inline === 'string' && inline !== '') {
    const problem = postgresUrlProblem(inline);
    if (problem === undefined) return inline;
    add('policy.database_url', problem);
    return undefined;
  }
  if (typeof envName === 'string' && envName !== '') {
    const value = env[envName];
    if (value === undefined || value.trim() === '') {
      add(
        'policy.database_url_env',
        `environment variable ${envName} is not set or is empty; export it with the registry URL ` +
          '(postgres://user:password@host:5432/dbname) before starting the gateway',
      );
      return undefined;
    }
    const problem = postgresUrlProblem(value);
    if (problem === undefined) return value;
    add('policy.database_url_env', `environment variable ${envName} ${problem}`);
  }
  return undefined;
}

/** `doc[name]` when it is a TOML table, else undefined (the schema reports wrong types). */
function table(doc: unknown, name: string): Record<string, unknown> | undefined {
  if (!isTable(doc)) return undefined;
  const value = doc[name];
  return isTable(value) ? value : undefined;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}
