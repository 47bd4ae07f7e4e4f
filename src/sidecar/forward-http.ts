import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';

/**
 * `HTTP_PROXY` support: a plain `http://` request in absolute form, sent over a tunnel that the
 * gateway authorized like any CONNECT. The request goes out in origin form over the tunnel with
 * `Connection: close` (one tunnel per request: the gateway decides per tunnel, so a tunnel must
 * never be reused for another origin), and the response comes back to the client unchanged except
 * for hop-by-hop headers.
 */

/** RFC 9110 §7.6.1 hop-by-hop headers, plus the proxy ones that are meant for us only. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Raw header pairs without hop-by-hop ones and without those the Connection header names. */
export function endToEndHeaders(rawHeaders: readonly string[]): Array<[string, string]> {
  const named = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    if (rawHeaders[i]?.toLowerCase() === 'connection') {
      for (const token of (rawHeaders[i + 1] ?? '').split(',')) named.add(token.trim().toLowerCase());
    }
  }
  const kept: Array<[string, string]> = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const lower = name.toLowerCase();
    if (!HOP_BY_HOP.has(lower) && !named.has(lower)) kept.push([name, rawHeaders[i + 1]!]);
  }
  return kept;
}

export interface ForwardResult {
  readonly status: number | undefined;
  readonly bytesClientToDest: number;
  readonly bytesDestToClient: number;
  readonly error: string | undefined;
}

/**
 * Sends `req` (already checked: absolute `http://` URL) over the established tunnel `stream` and
 * streams the answer into `res`. Resolves when the exchange is over, successfully or not.
 */
export function forwardOverTunnel(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  stream: ClientHttp2Stream,
): Promise<ForwardResult> {
  return new Promise((resolve) => {
    let bytesUp = 0;
    let bytesDown = 0;
    let status: number | undefined;
    let settled = false;
    const finish = (error: string | undefined) => {
      if (settled) return;
      settled = true;
      resolve({ status, bytesClientToDest: bytesUp, bytesDestToClient: bytesDown, error });
    };
    req.on('data', (chunk: Buffer) => {
      bytesUp += chunk.length;
    });
    stream.on('data', (chunk: Buffer) => {
      bytesDown += chunk.length;
    });

    const headers = endToEndHeaders(req.rawHeaders);
    if (!headers.some(([name]) => name.toLowerCase() === 'host')) headers.unshift(['Host', url.host]);
    headers.push(['Connection', 'close']);
    const upstream = httpRequest({
      // The tunnel is the connection: no agent, no DNS, no pooling.
      createConnection: () => stream as Duplex as never,
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers: headers.flat(),
    });
    upstream.on('response', (answer) => {
      status = answer.statusCode;
      res.writeHead(
        answer.statusCode ?? 502,
        answer.statusMessage,
        endToEndHeaders(answer.rawHeaders).flat(),
      );
      answer.pipe(res);
      answer.once('end', () => finish(undefined));
      answer.once('error', (error) => {
        res.destroy();
        finish(error.message);
      });
    });
    upstream.on('error', (error) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8', connection: 'close' });
        res.end(`sidecar: the destination ${url.host} failed before answering: ${error.message}\n`);
      } else {
        res.destroy();
      }
      finish(error.message);
    });
    res.once('close', () => {
      // The local client went away: stop the request, which closes the tunnel.
      if (!res.writableFinished) upstream.destroy();
      finish(res.writableFinished ? undefined : 'the local client closed the connection');
    });
    req.pipe(upstream);
  });
}
