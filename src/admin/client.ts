import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** Where a gateway's admin listener is and how to authenticate to it. */
export interface AdminEndpoint {
  readonly url: URL;
  /** Secret. */
  readonly token: string;
  /** CA certificates for an https admin listener with a private CA. */
  readonly ca: Buffer | undefined;
}

export interface AdminAnswer {
  readonly status: number;
  /** The parsed body; undefined when it was not JSON. */
  readonly json: Record<string, unknown> | undefined;
}

export class AdminUnreachableError extends Error {
  override name = 'AdminUnreachableError';
}

/** Largest answer read (a tunnel list of a busy gateway is a few MB). */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/**
 * One JSON call to an admin API, for the CLI (`tunnels`) and the dashboard alike. Resolves with the
 * status and the parsed body whatever the status; rejects with AdminUnreachableError when there is no
 * answer (refused, timed out, cut).
 */
export function adminRequest(
  endpoint: AdminEndpoint,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  timeoutMs = 10_000,
): Promise<AdminAnswer> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = openAdminRequest(endpoint, method, path, timeoutMs, payload, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => {
        let json: Record<string, unknown> | undefined;
        try {
          const value: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          json = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
      res.on('error', (error) => reject(new AdminUnreachableError(error.message)));
    });
    req.on('error', (error) => reject(new AdminUnreachableError(error.message)));
    req.end(payload);
  });
}

/**
 * Opens a request to the admin API with the bearer token and the CA; the caller reads the answer (a JSON
 * body, or an event stream that stays open).
 */
export function openAdminRequest(
  endpoint: AdminEndpoint,
  method: 'GET' | 'POST',
  path: string,
  timeoutMs: number,
  payload: Buffer | undefined,
  onResponse: (res: IncomingMessage) => void,
  accept = 'application/json',
): ReturnType<typeof httpRequest> {
  const target = new URL(path, endpoint.url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  const req = send(
    target,
    {
      method,
      headers: {
        authorization: `Bearer ${endpoint.token}`,
        accept,
        ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
      },
      ...(endpoint.ca ? { ca: endpoint.ca } : {}),
      timeout: timeoutMs,
    },
    onResponse,
  );
  req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
  return req;
}
