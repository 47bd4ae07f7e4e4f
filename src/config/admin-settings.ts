import { isIP } from 'node:net';
import { ListenAddrError, parseListenAddr } from './listen-addr.js';

/** The operator credentials of the admin listener, read from the environment at load. Secrets. */
export interface AdminTokens {
  readonly admin: string;
  /** Absent: no read-only role. */
  readonly readonly: string | undefined;
}

/**
 * Shortest token accepted: a bearer token is the whole credential, so it must not be guessable (32 hex
 * digits from `openssl rand -hex 16` is the documented way to make one).
 */
export const MIN_TOKEN_LENGTH = 24;

/**
 * The `[admin]` checks that span keys or read the environment: a parseable listen address, loopback unless
 * TLS is configured, both TLS paths or neither, and the tokens present and long enough. `admin` is the
 * (raw or validated) table; problems are reported through `add`, like the loader's other checks.
 */
export function adminSettings(
  admin: Record<string, unknown> | undefined,
  env: NodeJS.ProcessEnv,
  add: (key: string, message: string) => void,
): AdminTokens | undefined {
  const listen = admin?.['listen_addr'];
  if (admin === undefined || typeof listen !== 'string' || listen === '') return undefined;
  const cert = admin['tls_cert_path'];
  const key = admin['tls_key_path'];
  if ((cert === undefined) !== (key === undefined)) {
    add('admin.tls_cert_path', 'set both admin.tls_cert_path and admin.tls_key_path, or neither');
  }
  try {
    const { host } = parseListenAddr(listen);
    if (cert === undefined && !isLoopback(host)) {
      add(
        'admin.listen_addr',
        `${listen} is not a loopback address: the admin listener serves plain HTTP only on 127.0.0.1 or [::1]; ` +
          'set admin.tls_cert_path and admin.tls_key_path to listen elsewhere',
      );
    }
  } catch (error) {
    if (!(error instanceof ListenAddrError)) throw error;
    add('admin.listen_addr', error.message);
  }
  const adminToken = token(admin['token_env'] ?? 'AGENT_GATEWAY_ADMIN_TOKEN', 'admin.token_env', env, add);
  const readonlyEnv = admin['readonly_token_env'];
  const readonly =
    readonlyEnv === undefined ? undefined : token(readonlyEnv, 'admin.readonly_token_env', env, add);
  if (adminToken !== undefined && readonly !== undefined && adminToken === readonly) {
    add('admin.readonly_token_env', 'the read-only token must differ from the admin token');
  }
  return adminToken === undefined ? undefined : { admin: adminToken, readonly };
}

/** The token in the environment variable `name`, checked (set, long enough, no spaces); `key` names it. */
export function token(
  name: unknown,
  key: string,
  env: NodeJS.ProcessEnv,
  add: (key: string, message: string) => void,
): string | undefined {
  if (typeof name !== 'string') return undefined;
  const value = env[name];
  if (value === undefined || value === '') {
    add(
      key,
      `environment variable ${name} is not set or is empty; export a token first (e.g. $(openssl rand -hex 16))`,
    );
    return undefined;
  }
  if (value.length < MIN_TOKEN_LENGTH || /\s/.test(value)) {
    add(
      key,
      `environment variable ${name} must hold at least ${MIN_TOKEN_LENGTH} characters without spaces ` +
        '(the value is not shown); make one with: openssl rand -hex 16',
    );
    return undefined;
  }
  return value;
}

/** 127.0.0.0/8, ::1 and `localhost`: reachable from this host only. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}
