import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { GatewayEvents } from '../session/events.js';
import { parseTraceContext } from '../tracecontext/traceparent.js';
import { newAttempt } from './connect-attempt.js';
import { abandonTunnel, type ConnectFlowDeps, reject, runConnectFlow } from './connect-flow.js';
import { type ConnectionInfo, connectionInfoOf, markBusy, markIdle } from './connection-info.js';
import type { OpenTunnels } from './open-tunnels.js';
import {
  HTTP1_TUNNEL_ESTABLISHED,
  http1RejectResponse,
  type RejectStatus,
  STATUS_BODY,
} from './responses.js';

export interface Http1FrontOptions {
  readonly flow: ConnectFlowDeps;
  readonly tunnels: OpenTunnels;
  readonly events: GatewayEvents;
  readonly logger: Logger;
  readonly maxHeaderBytes: number;
}

/**
 * HTTP/1.1 CONNECT, one tunnel per TLS connection (what `curl --proxy https://…` sends).
 * Node's HTTP parser (llhttp) reads the request head; we take the socket over at 'connect'.
 * Any response other than 200 closes the connection: a client that was refused starts afresh.
 */
export function createHttp1Front(options: Http1FrontOptions): {
  accept(socket: TLSSocket): void;
  server: Server;
} {
  const { events } = options;
  const server = createServer({
    maxHeaderSize: options.maxHeaderBytes,
    // The request deadline is the TLS listener's own idle timer (server.request_timeout_ms), which also
    // covers HTTP/2; Node's periodic checker would only add a second, coarser one.
    requestTimeout: 0,
    headersTimeout: 0,
    keepAliveTimeout: 0,
    noDelay: true,
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const info = connectionInfoOf(req.socket);
    if (info) {
      reject(
        events,
        newAttempt(info, 'HTTP/1.1', req.url ?? '', undefined),
        405,
        { kind: 'method_not_allowed' },
        undefined,
        {
          method: req.method,
        },
      );
    }
    res.writeHead(405, {
      'content-type': 'text/plain; charset=utf-8',
      connection: 'close',
      allow: 'CONNECT',
    });
    res.end(`${STATUS_BODY[405]}\n`);
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const info = connectionInfoOf(socket);
    if (info) {
      reject(
        events,
        newAttempt(info, 'HTTP/1.1', '', undefined),
        400,
        { kind: 'bad_request' },
        err.code ?? err.message,
      );
    }
    if (socket.writable && !socket.destroyed) refuse(socket, 400);
    else socket.destroy();
  });

  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void handleConnect(options, req, socket as TLSSocket, head);
  });

  return {
    server,
    accept(socket: TLSSocket): void {
      server.emit('connection', socket);
    },
  };
}

async function handleConnect(
  options: Http1FrontOptions,
  req: IncomingMessage,
  socket: TLSSocket,
  head: Buffer,
) {
  const info = connectionInfoOf(socket);
  if (!info) {
    socket.destroy();
    return;
  }
  markBusy(info);
  // Until the tunnel owns the socket, a client error must not become an unhandled 'error' event.
  const onEarlyError = () => socket.destroy();
  socket.on('error', onEarlyError);
  const attempt = newAttempt(
    info,
    'HTTP/1.1',
    req.url ?? '',
    parseTraceContext(req.headers['traceparent'], req.headers['tracestate']),
  );
  try {
    const outcome = await runConnectFlow(options.flow, { attempt, cancelled: () => socket.destroyed });
    if (outcome.kind === 'cancelled') return;
    if (outcome.kind === 'reject') {
      refuse(socket, outcome.status, outcome.retryAfterS);
      return;
    }
    if (socket.destroyed) {
      abandonTunnel(options.events, outcome);
      return;
    }
    socket.write(HTTP1_TUNNEL_ESTABLISHED);
    // Bytes the client pipelined after the CONNECT head belong to the tunnel.
    options.tunnels.start(socket, outcome, () => markIdle(info), head);
    socket.removeListener('error', onEarlyError);
  } catch (err) {
    internalError(options, info, err);
    refuse(socket, 502);
  }
}

function internalError(options: Http1FrontOptions, info: ConnectionInfo, err: unknown): void {
  options.logger.error(
    { source_peer_addr: info.peerAddr, error: (err as Error).message },
    LogEvent.internalError,
  );
}

/**
 * How long a refused client may take to close its side after our response. The listener keeps sockets
 * half-open (for tunnels), so our end() alone would let a client that never closes hold the socket
 * forever; destroying at once could turn unread input into a RST that loses the response.
 */
const REFUSED_LINGER_MS = 2000;

function refuse(socket: Duplex, status: RejectStatus, retryAfterS?: number): void {
  if (socket.destroyed) return;
  socket.end(http1RejectResponse(status, retryAfterS));
  setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
}
