import { readFile } from 'node:fs/promises';
import { type AdminEndpoint, adminRequest } from '../admin/client.js';
import { CliError, EXIT_FAILURE, EXIT_USAGE, usageError } from './admin/errors.js';

export type { AdminEndpoint };

export interface AdminEndpointOptions {
  readonly adminUrl?: string;
  readonly tokenEnv?: string;
  readonly adminCa?: string;
}

export const ADMIN_URL_ENV = 'AGENT_GATEWAY_ADMIN_URL';
export const DEFAULT_TOKEN_ENV = 'AGENT_GATEWAY_ADMIN_TOKEN';

/** Resolves the flags and environment into an endpoint, or a usage error (exit 2) that says what to set. */
export async function adminEndpoint(
  opts: AdminEndpointOptions,
  env: NodeJS.ProcessEnv,
): Promise<AdminEndpoint> {
  const text = opts.adminUrl ?? env[ADMIN_URL_ENV];
  if (text === undefined || text === '') {
    throw usageError(
      `no admin listener given: pass --admin-url http://127.0.0.1:PORT (the gateway's [admin] listen_addr) or set ${ADMIN_URL_ENV}`,
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usageError(`--admin-url ${JSON.stringify(text)} is not a URL; write it as http://127.0.0.1:9443`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw usageError(`--admin-url must be http:// or https://, not ${url.protocol}//`);
  }
  const tokenEnv = opts.tokenEnv ?? DEFAULT_TOKEN_ENV;
  const token = env[tokenEnv];
  if (token === undefined || token === '') {
    throw usageError(
      `environment variable ${tokenEnv} is not set: export the gateway's admin (or read-only) token in it`,
    );
  }
  let ca: Buffer | undefined;
  if (opts.adminCa !== undefined) {
    try {
      ca = await readFile(opts.adminCa);
    } catch (error) {
      throw usageError(`--admin-ca ${opts.adminCa}: ${(error as Error).message}`);
    }
  }
  return { url, token, ca };
}

/** One JSON call to the admin API; API errors become CliErrors carrying the API's stable code. */
export async function adminCall(
  endpoint: AdminEndpoint,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  let answer: Awaited<ReturnType<typeof adminRequest>>;
  try {
    answer = await adminRequest(endpoint, method, path, body);
  } catch (error) {
    throw new CliError(
      `cannot reach the admin listener at ${endpoint.url.origin}: ${(error as Error).message}`,
      EXIT_FAILURE,
    );
  }
  const { status, json } = answer;
  if (json === undefined) {
    throw new CliError(
      `the admin listener at ${endpoint.url.origin} answered ${status} without JSON`,
      EXIT_FAILURE,
    );
  }
  if (status >= 400) {
    const error = json['error'] as { code?: string; message?: string } | undefined;
    const usage = status === 400 || status === 401 || status === 403;
    throw new CliError(
      `${error?.message ?? `HTTP ${status}`} [${error?.code ?? 'ADMIN_ERROR'}]`,
      usage ? EXIT_USAGE : EXIT_FAILURE,
    );
  }
  return json;
}
