import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { CliError, EXIT_FAILURE, EXIT_USAGE, usageError } from './admin/errors.js';

/** Where a running gateway's admin listener is and how to authenticate to it. */
export interface AdminEndpoint {
  readonly url: URL;
  readonly token: string;
  /** CA certificates for an https admin listener with a private CA. */
  readonly ca: Buffer | undefined;
}

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
export function adminCall(
  endpoint: AdminEndpoint,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const target = new URL(path, endpoint.url);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      target,
      {
        method,
        headers: {
          authorization: `Bearer ${endpoint.token}`,
          accept: 'application/json',
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
        },
        ...(endpoint.ca ? { ca: endpoint.ca } : {}),
        timeout: 10_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          let parsed: Record<string, unknown>;
          try {
            parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          } catch {
            reject(
              new CliError(
                `the admin listener at ${endpoint.url.origin} answered ${res.statusCode} without JSON`,
                EXIT_FAILURE,
              ),
            );
            return;
          }
          if ((res.statusCode ?? 500) >= 400) {
            const error = parsed['error'] as { code?: string; message?: string } | undefined;
            const usage = res.statusCode === 400 || res.statusCode === 401 || res.statusCode === 403;
            reject(
              new CliError(
                `${error?.message ?? `HTTP ${res.statusCode}`} [${error?.code ?? 'ADMIN_ERROR'}]`,
                usage ? EXIT_USAGE : EXIT_FAILURE,
              ),
            );
            return;
          }
          resolve(parsed);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (error) =>
      reject(
        new CliError(
          `cannot reach the admin listener at ${endpoint.url.origin}: ${error.message}`,
          EXIT_FAILURE,
        ),
      ),
    );
    req.end(payload);
  });
}
