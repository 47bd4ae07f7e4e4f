import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type ClientHttp2Stream, constants as h2 } from 'node:http2';
import type { Socket } from 'node:net';
import { DestinationError, parseDestination } from '../destination/normalize.js';
import type { Logger } from '../observability/logger.js';
import { type DepartureWatch, watchDeparture } from './client-departure.js';
import type { TunnelRequestResult } from './connect-stream.js';
import { SidecarEvent } from './events.js';
import { forwardOverTunnel } from './forward-http.js';
import type { GatewayConnection } from './gateway-connection.js';
import { answerAndClose, readBounded, sidecarMessage, TUNNEL_ESTABLISHED } from './local-responses.js';
import type { LocalTunnels, TunnelFields } from './local-tunnels.js';
import { PROXY_AUTH_CHALLENGE } from './proxy-auth.js';
import { startTunnelTrace, type TunnelTrace, traceHeaders } from './trace.js';
import type { SidecarEvents } from './tunnel-events.js';

export interface LocalProxyDeps {
  readonly gateway: GatewayConnection;
  readonly tunnels: LocalTunnels;
  /** True when the request's Proxy-Authorization is acceptable (always, without a credential). */
  readonly authorized: (header: string | undefined) => boolean;
  /** The agent identity from our certificate, for log lines (the gateway decides on its own reading). */
  readonly identity: string | null;
  readonly logger: Logger;
  /** Where tunnel outcomes are published for metrics and spans (tunnel-events.ts). */
  readonly events?: SidecarEvents;
}

/**
 * The proxy that local clients talk to: plain HTTP/1.1 (what HTTPS_PROXY=http://... means to every
 * client). `CONNECT host:port` becomes a CONNECT stream to the gateway; an absolute-form `http://`
 * request is carried through such a tunnel to the URL's port; anything else is a 4xx that says what
 * the sidecar expects. One server object can listen on TCP and on a Unix socket.
 */
export function createLocalProxy(deps: LocalProxyDeps): Server {
  const server = createServer({
    // A slow request head is the only thing worth timing out here; bodies of forwarded requests and
    // tunnels may legitimately take long (the tunnel has its own idle timeout).
    headersTimeout: 30_000,
    requestTimeout: 0,
    keepAliveTimeout: 5_000,
  });
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    void handleConnect(deps, req, socket, head);
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    void handleRequest(deps, req, res);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    socket.on('error', () => {});
    const problem = 'upgrades (WebSocket over ws://) are not forwarded; use CONNECT (HTTPS_PROXY, wss://)';
    refuseLocally(deps, clientAddr(socket), req, 400, problem);
    answerAndClose(socket, 400, sidecarMessage(problem));
  });
  return server;
}

async function handleConnect(deps: LocalProxyDeps, req: IncomingMessage, socket: Socket, head: Buffer) {
  // Until a tunnel owns the socket, a client reset must not become an uncaught error.
  socket.on('error', () => {});
  // From the request's arrival, before any await: a client gone by the answer gets no tunnel.
  const watch = watchDeparture(socket, true);
  const outcome = await openTunnel(deps, req, clientAddr(socket), { kind: 'connect' }, watch, () =>
    targetAuthority(req.url ?? '', 'bad CONNECT target'),
  );
  const early = watch.stop();
  if (outcome.kind === 'departed') {
    socket.destroy();
    return;
  }
  if (outcome.kind === 'refused') {
    answerAndClose(socket, outcome.status, outcome.body, outcome.headers);
    return;
  }
  socket.write(TUNNEL_ESTABLISHED);
  deps.logger.info({ ...outcome.fields, status: 200 }, SidecarEvent.tunnelOpened);
  // Bytes the client sent after its CONNECT head, in the head's chunk or while it waited, come first.
  const pipelined = early.length === 0 ? head : Buffer.concat([head, early]);
  const { trace, openedAt } = outcome;
  deps.tunnels.relay(socket, outcome.stream, pipelined, outcome.fields, (ended) =>
    deps.events?.emit('tunnelEnded', { trace, openedAt, ...ended }),
  );
}

async function handleRequest(deps: LocalProxyDeps, req: IncomingMessage, res: ServerResponse) {
  const url = absoluteHttpUrl(req.url);
  const watch = watchDeparture(req.socket, false);
  const outcome = await openTunnel(
    deps,
    req,
    clientAddr(req.socket),
    { kind: 'http', method: req.method },
    watch,
    () =>
      typeof url === 'string'
        ? { problem: url }
        : targetAuthority(`${url.hostname}:${url.port || '80'}`, 'bad request target'),
  );
  watch.stop();
  if (outcome.kind === 'departed') {
    res.destroy();
    return;
  }
  if (outcome.kind === 'refused') {
    reply(res, outcome.status, outcome.body, outcome.headers);
    return;
  }
  const { stream, fields, trace, openedAt } = outcome;
  deps.logger.info({ ...fields, status: 200 }, SidecarEvent.tunnelOpened);
  const started = Date.now();
  const untrack = deps.tunnels.track(() => {
    stream.destroy();
    res.destroy();
  });
  // Opened implies the target was a URL (a string is a refusal). The client was there a moment ago (the
  // watch ran until now, in this turn), so the forward's own 'close' listener on `res` is in time.
  const forwarded = await forwardOverTunnel(req, res, url as URL, stream);
  untrack();
  if (!stream.destroyed) stream.close();
  deps.events?.emit('tunnelEnded', {
    trace,
    openedAt,
    bytesClientToDest: forwarded.bytesClientToDest,
    bytesDestToClient: forwarded.bytesDestToClient,
    cause: forwarded.error === undefined ? 'completed' : 'http_forward_failed',
  });
  deps.logger.info(
    {
      ...fields,
      http_status: forwarded.status,
      bytes_client_to_dest: forwarded.bytesClientToDest,
      bytes_dest_to_client: forwarded.bytesDestToClient,
      error: forwarded.error,
      duration_ms: Date.now() - started,
    },
    forwarded.error === undefined ? SidecarEvent.tunnelClosed : SidecarEvent.httpForwardFailed,
  );
}

/** The normalized authority the client asked for, or a 400 problem. */
type Target = { readonly authority: string } | { readonly problem: string };

type TunnelOutcome =
  | {
      readonly kind: 'opened';
      readonly stream: ClientHttp2Stream;
      readonly fields: TunnelFields;
      readonly trace: TunnelTrace;
      readonly openedAt: number;
    }
  /** The local client left before the tunnel was established; the gateway's CONNECT was cancelled. */
  | { readonly kind: 'departed' }
  | {
      readonly kind: 'refused';
      readonly status: number;
      readonly body: string | Buffer;
      readonly headers?: Record<string, string>;
    };

/**
 * The steps every local request takes before bytes flow: the local credential (first, so that a
 * process without it learns nothing else), the target, a trace context, and the gateway's answer.
 * Refusals are logged here; the caller only writes them in its own form (raw socket or response).
 */
async function openTunnel(
  deps: LocalProxyDeps,
  req: IncomingMessage,
  client: string,
  extraFields: TunnelFields,
  watch: DepartureWatch,
  target: () => Target,
): Promise<TunnelOutcome> {
  if (!deps.authorized(req.headers['proxy-authorization'])) {
    refuseLocally(deps, client, req, 407, 'proxy credential missing or wrong');
    return {
      kind: 'refused',
      status: 407,
      body: sidecarMessage('proxy authentication required'),
      headers: { 'Proxy-Authenticate': PROXY_AUTH_CHALLENGE },
    };
  }
  const wanted = target();
  if ('problem' in wanted) {
    refuseLocally(deps, client, req, 400, wanted.problem);
    return { kind: 'refused', status: 400, body: sidecarMessage(wanted.problem) };
  }
  const trace = startTunnelTrace(req.headers['traceparent'], req.headers['tracestate']);
  const fields: TunnelFields = {
    source_identity: deps.identity ?? undefined,
    client_addr: client,
    dest_authority: wanted.authority,
    ...extraFields,
    trace_id: trace.traceId,
    span_id: trace.spanId,
  };
  const startedAt = performance.now();
  const result = await deps.gateway.request(wanted.authority, traceHeaders(trace), watch.signal);
  const answered = (status: number) =>
    deps.events?.emit('tunnelAnswered', {
      trace,
      authority: wanted.authority,
      kind: extraFields['kind'] === 'http' ? 'http' : 'connect',
      identity: deps.identity,
      startedAt,
      status,
      answeredBy: result.kind === 'failed' ? 'sidecar' : 'gateway',
    });
  const left = () => abandoned(deps, fields, result, answered, trace);
  if (result.kind === 'cancelled' || watch.departed) return left();
  if (result.kind === 'answered' && result.status === 200) {
    answered(200);
    return { kind: 'opened', stream: result.stream, fields, trace, openedAt: performance.now() };
  }
  const { status, body } = await refusal(result);
  if (watch.departed) return left();
  answered(status);
  deps.logger.info({ ...fields, status, reason: reasonOf(result, body) }, SidecarEvent.tunnelRefused);
  return { kind: 'refused', status, body };
}

/**
 * The client left before its tunnel existed: cancel whatever the gateway answered, and say so. An answer
 * that did arrive is still published (metrics count it; a 200 also ends at once as `local_client_left`),
 * so the sidecar's counts match the gateway's.
 */
function abandoned(
  deps: LocalProxyDeps,
  fields: TunnelFields,
  result: TunnelRequestResult,
  answered: (status: number) => void,
  trace: TunnelTrace,
): TunnelOutcome {
  if (result.kind === 'answered') {
    if (!result.stream.destroyed) result.stream.close(h2.NGHTTP2_CANCEL);
    answered(result.status);
    if (result.status === 200) {
      deps.events?.emit('tunnelEnded', {
        trace,
        openedAt: performance.now(),
        bytesClientToDest: 0,
        bytesDestToClient: 0,
        cause: 'local_client_left',
      });
    }
  }
  deps.logger.info(
    {
      ...fields,
      gateway_status: result.kind === 'answered' ? result.status : undefined,
      reason: 'the local client left before the tunnel was established',
    },
    SidecarEvent.tunnelAbandoned,
  );
  return { kind: 'departed' };
}

function targetAuthority(text: string, what: string): Target {
  try {
    return { authority: parseDestination(text).authority };
  } catch (error) {
    if (!(error instanceof DestinationError)) throw error;
    return { problem: `${what}: ${error.message}` };
  }
}

/** The status and body for a CONNECT the gateway refused or could not answer. */
async function refusal(
  result: Exclude<TunnelRequestResult, { kind: 'cancelled' }>,
): Promise<{ status: number; body: Buffer | string }> {
  if (result.kind === 'failed') return { status: result.status, body: sidecarMessage(result.reason) };
  // The gateway's own status and body (403 "forbidden", 502 "bad gateway", ...), unchanged.
  const body = await readBounded(result.stream);
  if (!result.stream.destroyed) result.stream.close();
  return { status: result.status, body };
}

function reasonOf(
  result: Exclude<TunnelRequestResult, { kind: 'cancelled' }>,
  body: Buffer | string,
): string {
  return result.kind === 'failed' ? result.reason : `gateway answered: ${body.toString().trim()}`;
}

/** The URL of an absolute-form `http://` request, or the reason the request is not one. */
function absoluteHttpUrl(target: string | undefined): URL | string {
  const text = target ?? '';
  if (text.startsWith('/')) {
    return (
      `this is a forward proxy: send CONNECT host:port (HTTPS_PROXY) or an absolute http:// URL ` +
      `(HTTP_PROXY), not a path (got ${JSON.stringify(text.slice(0, 100))})`
    );
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `request target ${JSON.stringify(text.slice(0, 100))} is not an absolute URL`;
  }
  if (url.protocol !== 'http:') {
    return `only http:// URLs can be forwarded as requests; for ${url.protocol}// use CONNECT (HTTPS_PROXY)`;
  }
  if (url.username !== '' || url.password !== '') {
    return 'credentials in the request URL are not forwarded; send them in an Authorization header';
  }
  return url;
}

function reply(
  res: ServerResponse,
  status: number,
  body: string | Buffer,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', connection: 'close', ...headers });
  res.end(body);
}

function refuseLocally(
  deps: LocalProxyDeps,
  client: string,
  req: IncomingMessage,
  status: number,
  reason: string,
) {
  const event = status === 407 ? SidecarEvent.proxyAuthRequired : SidecarEvent.badRequest;
  deps.logger.info({ client_addr: client, method: req.method, status, reason }, event);
  deps.events?.emit('localRefusal', { status });
}

function clientAddr(socket: Socket): string {
  // Unix-socket clients have no address; the socket path is in the `listening` line.
  if (socket.remoteAddress === undefined) return 'unix';
  return socket.remoteAddress.includes(':')
    ? `[${socket.remoteAddress}]:${socket.remotePort}`
    : `${socket.remoteAddress}:${socket.remotePort}`;
}
