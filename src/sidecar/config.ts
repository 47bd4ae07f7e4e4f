import { isIP } from 'node:net';
import { z } from 'zod';
import { token } from '../config/admin-settings.js';
import { ConfigError, formatKeyPath, unknownKeyProblem } from '../config/errors.js';
import { type ListenAddr, ListenAddrError, parseListenAddr } from '../config/listen-addr.js';
import { OTLP_PROTOCOLS, type OtlpProtocol } from '../config/schema.js';
import { issueToProblems } from '../config/zod-problems.js';
import { type Destination, DestinationError, parseDestination } from '../destination/normalize.js';
import { encodeOidContent, OidError } from '../identity/oid.js';
import { isPkcs11Uri } from '../pkcs11/uri.js';
import { DEFAULT_IDENTITY_EXTENSION_OID } from '../pki/identity-extension.js';
import { type ResolvedTracing, resolveTracing } from '../tracing/settings.js';
import { resolveTokenKey, type TokenKeyConfig } from './key-config.js';

/**
 * The sidecar's settings: the `[sidecar]` table of its own TOML file (never the gateway's file: the
 * two run on different machines with different secrets), overlaid by command-line flags. Like the
 * gateway's config every key is checked and an unknown key is an error, and all problems are reported
 * in one run, each named the way the operator wrote it (`--listen` or `sidecar.listen_addr`).
 */

const positiveInt = () =>
  z.number({ error: 'must be a number' }).int('must be a whole number').positive('must be > 0');
const nonNegativeInt = () =>
  z.number({ error: 'must be a number' }).int('must be a whole number').nonnegative('must be >= 0');
const envName = () =>
  z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name such as PROXY_AUTH');

export const DEFAULT_SIDECAR_LISTEN = '127.0.0.1:3128';

export const sidecarSchema = z.strictObject({
  /** The gateway's TLS port, `host:port` (port 443 when omitted). */
  gateway_addr: z.string().min(1),
  /** PEM CA certificate(s) that sign the gateway's server certificate. */
  gateway_ca_path: z.string().min(1),
  /** The name the gateway's certificate must carry; defaults to the host of gateway_addr. */
  gateway_server_name: z.string().min(1).optional(),
  /** The agent's client certificate (PEM) and its private key: a PEM file or a `pkcs11:` URI. */
  cert_path: z.string().min(1),
  key_path: z.string().min(1),
  /** Environment variable holding the key's passphrase, for an encrypted key file. */
  key_passphrase_env: envName().optional(),
  /** For a pkcs11: key: the variable holding the token's user PIN, the module, OpenSSL's engine. */
  pin_env: envName().optional(),
  pkcs11_module: z.string().min(1).optional(),
  pkcs11_engine: z.string().min(1).optional(),
  /** Only used to warn at start when the certificate lacks the identity the gateway will look for. */
  client_ext_oid: z
    .string()
    .regex(/^(0|1|2)(\.(0|[1-9][0-9]*))+$/, 'must be a dotted OID such as 1.3.6.1.4.1.57264.1.1')
    .default(DEFAULT_IDENTITY_EXTENSION_OID),
  /** Local TCP proxy address; default 127.0.0.1:3128 unless only a Unix socket is configured. */
  listen_addr: z.string().min(1).optional(),
  /** Required to listen anywhere but loopback: any host that reaches the port could use the agent's key. */
  allow_non_loopback: z.boolean({ error: 'must be true or false' }).default(false),
  unix_socket_path: z.string().min(1).optional(),
  /** Permissions of the Unix socket file, octal: "600" (TOML 0o600 works too). */
  unix_socket_mode: z
    .union([
      z.number().int().min(0).max(0o777),
      z.string().regex(/^0?[0-7]{3}$/, 'must be an octal mode such as "600" or "0660"'),
    ])
    .default(0o600),
  /** Environment variable holding `user:password`; local clients must then send it as Proxy-Authorization. */
  proxy_auth_env: envName().optional(),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  /** On SIGTERM, how long open tunnels may continue before they are closed. */
  shutdown_grace_s: nonNegativeInt().default(10),
  /** TCP + TLS handshake to the gateway. */
  connect_timeout_ms: positiveInt().default(5000),
  /** How long the gateway may take to answer a CONNECT (policy, DNS, upstream dial). */
  request_timeout_s: positiveInt().default(60),
  keepalive_interval_s: positiveInt().default(30),
  keepalive_timeout_s: positiveInt().default(10),
  /** Ceiling of the exponential backoff between failed attempts to reach the gateway. */
  reconnect_max_ms: positiveInt().default(5000),
  tunnel_idle_timeout_s: positiveInt().default(900),
  /** Loopback address of the sidecar's own /metrics and /healthz; unset = none. */
  admin_listen_addr: z.string().min(1).optional(),
  /** Variable holding the bearer token /metrics needs (at least 24 characters). */
  admin_token_env: envName().default('AGENT_GATEWAY_SIDECAR_ADMIN_TOKEN'),
  /** OTLP collector for the sidecar's spans; unset = the OTEL_EXPORTER_OTLP_* variables, else none. */
  otlp_endpoint: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  otlp_protocol: z.enum(OTLP_PROTOCOLS).optional(),
});

type SidecarKey = keyof typeof sidecarSchema.shape;
const SIDECAR_KEYS = Object.keys(sidecarSchema.shape) as SidecarKey[];

/** The flag that sets each key, for messages and for the CLI's help text. */
export const FLAG_OF_KEY: Readonly<Partial<Record<SidecarKey, string>>> = {
  gateway_addr: '--gateway',
  gateway_ca_path: '--gateway-ca',
  gateway_server_name: '--gateway-server-name',
  cert_path: '--cert',
  key_path: '--key',
  key_passphrase_env: '--key-passphrase-env',
  pin_env: '--pin-env',
  pkcs11_module: '--pkcs11-module',
  pkcs11_engine: '--pkcs11-engine',
  client_ext_oid: '--client-ext-oid',
  listen_addr: '--listen',
  allow_non_loopback: '--allow-non-loopback',
  unix_socket_path: '--unix-socket',
  unix_socket_mode: '--unix-socket-mode',
  proxy_auth_env: '--proxy-auth-env',
  log_level: '--log-level',
  shutdown_grace_s: '--shutdown-grace-s',
  admin_listen_addr: '--admin-listen',
  admin_token_env: '--admin-token-env',
  otlp_endpoint: '--otlp-endpoint',
  otlp_protocol: '--otlp-protocol',
};

/** The service.name of the sidecar's spans. */
export const SIDECAR_SERVICE_NAME = 'agent_gateway_sidecar';

export interface ProxyCredential {
  readonly user: string;
  readonly password: string;
}

export interface SidecarConfig {
  readonly gateway: Destination;
  readonly gatewayServerName: string;
  readonly gatewayCaPath: string;
  readonly certPath: string;
  /** A key file, or the URI of a token key (then `keyToken` is set). */
  readonly keyPath: string;
  readonly keyPassphrase: string | undefined;
  readonly keyToken: TokenKeyConfig | undefined;
  readonly identityOid: string;
  readonly identityOidContent: Buffer;
  readonly listen: ListenAddr | undefined;
  readonly unixSocket: { readonly path: string; readonly mode: number } | undefined;
  readonly proxyCredential: ProxyCredential | undefined;
  readonly logLevel: string;
  readonly shutdownGraceMs: number;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveTimeoutMs: number;
  readonly reconnectMaxMs: number;
  readonly tunnelIdleTimeoutMs: number;
  /** The sidecar's own /metrics listener (loopback only, token-protected); undefined = none. */
  readonly admin: { readonly listen: ListenAddr; readonly token: string } | undefined;
  /** Span export, from the otlp_* keys and the OTEL_* variables. */
  readonly tracing: ResolvedTracing;
}

export interface SidecarConfigInput {
  /** The parsed TOML document of `--config`, if one was given. */
  readonly fileDocument: unknown;
  /** Where the document came from, for messages. */
  readonly source: string;
  /** Values from flags, by key; undefined entries are ignored. */
  readonly overrides: Readonly<Partial<Record<SidecarKey, unknown>>>;
  readonly env: NodeJS.ProcessEnv;
}

/** Merges file and flags, validates, and resolves environment references. Throws ConfigError. */
export function resolveSidecarConfig(input: SidecarConfigInput): SidecarConfig {
  const problems: string[] = [];
  const fromFile = sidecarTable(input.fileDocument, problems);
  const merged: Record<string, unknown> = { ...fromFile };
  const fromFlags = new Set<string>();
  for (const [key, value] of Object.entries(input.overrides)) {
    if (value === undefined) continue;
    merged[key] = value;
    fromFlags.add(key);
  }
  const label = (key: string): string => {
    const flag = FLAG_OF_KEY[key as SidecarKey];
    return fromFlags.has(key) && flag !== undefined ? flag : `sidecar.${key}`;
  };

  const parsed = sidecarSchema.safeParse(merged, { reportInput: true });
  const flagged = new Set<string>();
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(...describeIssue(issue, label));
      flagged.add(String(issue.path[0] ?? ''));
    }
  }
  // The checks that need other parsers or the environment run on the raw values even when the schema
  // failed elsewhere, so one run reports every problem; a key the schema rejected is skipped.
  const text = (key: SidecarKey): string | undefined => {
    const value = merged[key];
    return typeof value === 'string' && !flagged.has(key) ? value : undefined;
  };
  const gatewayText = text('gateway_addr');
  const gateway =
    gatewayText === undefined
      ? undefined
      : attempt(problems, label('gateway_addr'), () => parseDestination(gatewayText));
  const oid = flagged.has('client_ext_oid')
    ? undefined
    : (text('client_ext_oid') ?? DEFAULT_IDENTITY_EXTENSION_OID);
  const identityOidContent =
    oid === undefined ? undefined : attempt(problems, label('client_ext_oid'), () => encodeOidContent(oid));
  // A Unix socket alone means "no TCP port": an agent confined to a socket should not get one too.
  const listenText =
    text('listen_addr') ?? (merged['unix_socket_path'] === undefined ? DEFAULT_SIDECAR_LISTEN : undefined);
  const listen =
    listenText === undefined || flagged.has('listen_addr')
      ? undefined
      : attempt(problems, label('listen_addr'), () => parseListenAddr(listenText));
  if (listen !== undefined && !isLoopbackHost(listen.host) && merged['allow_non_loopback'] !== true) {
    problems.push(
      `${label('listen_addr')}: ${listen.host} is not a loopback address; any host that can reach it could ` +
        `use the agent's key. Pass ${FLAG_OF_KEY.allow_non_loopback} (sidecar.allow_non_loopback = true) ` +
        'if that is really meant, and set a proxy credential',
    );
  }
  const authEnv = text('proxy_auth_env');
  const proxyCredential =
    authEnv === undefined
      ? undefined
      : credentialFromEnv(authEnv, input.env, label('proxy_auth_env'), problems);
  const passphraseEnv = text('key_passphrase_env');
  const keyPath = text('key_path');
  const keyToken = resolveTokenKey(
    {
      keyPath,
      passphraseEnv,
      pinEnv: text('pin_env'),
      module: text('pkcs11_module'),
      engine: text('pkcs11_engine'),
    },
    input.env,
    label,
    problems,
  );
  const keyIsFile = keyPath !== undefined && !isPkcs11Uri(keyPath);
  const keyPassphrase = passphraseEnv === undefined || !keyIsFile ? undefined : input.env[passphraseEnv];
  if (keyIsFile && passphraseEnv !== undefined && (keyPassphrase === undefined || keyPassphrase === '')) {
    problems.push(
      `${label('key_passphrase_env')}: environment variable ${passphraseEnv} is not set or is empty`,
    );
  }
  const admin = adminListener(text('admin_listen_addr'), text('admin_token_env'), input.env, label, problems);
  if (!parsed.success || problems.length > 0 || gateway === undefined || identityOidContent === undefined) {
    throw new ConfigError(problems, input.source);
  }
  const c = parsed.data;
  return {
    gateway,
    gatewayServerName: c.gateway_server_name ?? gateway.host,
    gatewayCaPath: c.gateway_ca_path,
    certPath: c.cert_path,
    keyPath: c.key_path,
    keyPassphrase,
    keyToken,
    identityOid: c.client_ext_oid,
    identityOidContent,
    listen,
    unixSocket:
      c.unix_socket_path === undefined
        ? undefined
        : { path: c.unix_socket_path, mode: octalMode(c.unix_socket_mode) },
    proxyCredential,
    logLevel: c.log_level,
    shutdownGraceMs: c.shutdown_grace_s * 1000,
    connectTimeoutMs: c.connect_timeout_ms,
    requestTimeoutMs: c.request_timeout_s * 1000,
    keepaliveIntervalMs: c.keepalive_interval_s * 1000,
    keepaliveTimeoutMs: c.keepalive_timeout_s * 1000,
    reconnectMaxMs: c.reconnect_max_ms,
    tunnelIdleTimeoutMs: c.tunnel_idle_timeout_s * 1000,
    admin,
    tracing: resolveTracing(
      {
        endpoint: c.otlp_endpoint,
        protocol: c.otlp_protocol as OtlpProtocol | undefined,
        serviceName: SIDECAR_SERVICE_NAME,
      },
      input.env,
    ),
  };
}

/**
 * The sidecar's admin listener: loopback only (it has no TLS of its own, and /metrics is for the
 * machine's own Prometheus agent), and a token from the environment, checked like the gateway's.
 */
function adminListener(
  listenText: string | undefined,
  tokenEnv: string | undefined,
  env: NodeJS.ProcessEnv,
  label: (key: string) => string,
  problems: string[],
): SidecarConfig['admin'] {
  if (listenText === undefined) return undefined;
  const listen = attempt(problems, label('admin_listen_addr'), () => parseListenAddr(listenText));
  if (listen !== undefined && !isLoopbackHost(listen.host)) {
    problems.push(
      `${label('admin_listen_addr')}: ${listen.host} is not a loopback address; the sidecar's admin listener ` +
        'serves plain HTTP on 127.0.0.1 or [::1] only',
    );
  }
  const value = token(
    tokenEnv ?? 'AGENT_GATEWAY_SIDECAR_ADMIN_TOKEN',
    label('admin_token_env'),
    env,
    (key, message) => problems.push(`${key}: ${message}`),
  );
  return listen === undefined || value === undefined ? undefined : { listen, token: value };
}

/** 127.0.0.0/8, ::1 and the name localhost: the addresses only this machine can reach. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}

/** The `[sidecar]` table of the file, or {} without a file; anything else in the file is a problem. */
function sidecarTable(doc: unknown, problems: string[]): Record<string, unknown> {
  if (doc === undefined) return {};
  if (!isTable(doc)) return {};
  for (const key of Object.keys(doc)) {
    if (key !== 'sidecar') {
      problems.push(
        `unknown table or key ${JSON.stringify(key)} in [root]: a sidecar config file holds only a [sidecar] ` +
          "table (the gateway's [server], [policy], ... belong in the gateway's own config file)",
      );
    }
  }
  const table = doc['sidecar'];
  if (table === undefined) {
    problems.push('required table is missing: add a [sidecar] section');
    return {};
  }
  if (!isTable(table)) {
    problems.push('sidecar: must be a table ([sidecar])');
    return {};
  }
  return table;
}

function describeIssue(issue: z.core.$ZodIssue, label: (key: string) => string): string[] {
  const key = String(issue.path[0] ?? '');
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => unknownKeyProblem(k, ['sidecar'], SIDECAR_KEYS, new Map()));
  }
  const generic = formatKeyPath(issue.path);
  return issueToProblems(issue).map((problem) => {
    const text = problem.startsWith(`${generic}: `) ? problem.slice(generic.length + 2) : problem;
    const flag = FLAG_OF_KEY[key as SidecarKey];
    if (text === 'required' && flag !== undefined) {
      return `sidecar.${key}: required; pass ${flag} or set it in the [sidecar] table of --config`;
    }
    const where = label(key);
    // Flags are always text: the TOML advice about quotes would only confuse.
    return `${where}: ${where.startsWith('--') ? text.replace(' (write it without quotes)', '') : text}`;
  });
}

function credentialFromEnv(
  name: string,
  env: NodeJS.ProcessEnv,
  key: string,
  problems: string[],
): ProxyCredential | undefined {
  const value = env[name];
  const cut = value?.indexOf(':') ?? -1;
  if (value === undefined || cut <= 0 || cut === value.length - 1) {
    // Never echo the value: it is a secret, even when malformed.
    problems.push(
      `${key}: environment variable ${name} must hold "user:password" (both non-empty), ` +
        `so that clients can use HTTPS_PROXY=http://user:password@host:port`,
    );
    return undefined;
  }
  return { user: value.slice(0, cut), password: value.slice(cut + 1) };
}

function octalMode(mode: number | string): number {
  return typeof mode === 'number' ? mode : Number.parseInt(mode, 8);
}

function attempt<T>(problems: string[], key: string, run: () => T): T | undefined {
  try {
    return run();
  } catch (error) {
    if (error instanceof DestinationError || error instanceof ListenAddrError || error instanceof OidError) {
      problems.push(`${key}: ${error.message}`);
      return undefined;
    }
    throw error;
  }
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}
