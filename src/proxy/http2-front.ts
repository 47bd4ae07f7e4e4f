import {
  constants,
  createServer,
  type Http2Server,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import { parseTraceparent } from '../observability/traceparent.js';
import { abandonTunnel, type ConnectFlowDeps, runConnectFlow } from './connect-flow.js';
import { clearRequestTimer, connectionInfoOf } from './connection-info.js';
import type { OpenTunnels } from './open-tunnels.js';
import { type RejectStatus, STATUS_BODY } from './responses.js';

export interface Http2FrontOptions {
  readonly flow: ConnectFlowDeps;
  readonly tunnels: OpenTunnels;
  readonly logger: Logger;
  readonly maxConcurrentStreams: number;
  readonly streamWindowBytes: number;
  readonly connectionWindowBytes: number;
  /** A session with no frames for this long is closed (its tunnels would be idle too). */
  readonly sessionIdleTimeoutMs: number;
  readonly maxHeaderListBytes: number;
  /** Stream window for this identity's sessions (smaller when its upload is rate-limited). */
  readonly streamWindowFor?: (identity: string | null) => number;
}

export interface Http2Front {
  accept(socket: TLSSocket): void;
  /** Stop taking new streams on every session (GOAWAY); open streams continue. */
  closeSessions(): void;
  /** Destroy every session now (shutdown deadline). */
  destroySessions(): void;
}

/**
 * HTTP/2 CONNECT: many tunnels per TLS connection, one stream each. Node's HTTP/2 engine runs over
 * the TLS socket our listener accepted; flow control does the backpressure: a paused stream stops
 * granting window, so the client cannot send more than one stream window ahead.
 */
export function createHttp2Front(options: Http2FrontOptions): Http2Front {
  const { logger } = options;
  const sessions = new Set<ServerHttp2Session>();
  const server: Http2Server = createServer({
    settings: {
      maxConcurrentStreams: options.maxConcurrentStreams,
      initialWindowSize: options.streamWindowBytes,
      maxHeaderListSize: options.maxHeaderListBytes,
      enablePush: false,
    },
    maxHeaderListPairs: 64,
  });

  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', (err) => {
      const info = connectionInfoOf(session.socket);
      logger.info({ source_peer_addr: info?.peerAddr, error: err.message }, LogEvent.http2SessionError);
    });
    session.setTimeout(options.sessionIdleTimeoutMs, () => session.close());
    // The connection window must be at least the stream window times the streams that should
    // run at full speed together; Node's default (64 KiB) throttles every tunnel.
    if (!session.destroyed) session.setLocalWindowSize(options.connectionWindowBytes);
    // A throttled stream is paused, but the gateway must hold whatever its window still lets the client
    // send; a rate-limited identity gets a window sized to its rate. Sent before any stream can open.
    const window = options.streamWindowFor?.(connectionInfoOf(session.socket)?.identity ?? null);
    if (window !== undefined && window < options.streamWindowBytes && !session.destroyed) {
      session.settings({ initialWindowSize: window });
    }
  });

  server.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
    void handleStream(options, stream, headers);
  });

  return {
    accept(socket: TLSSocket): void {
      // The listener keeps TLS sockets half-open for HTTP/1.1 tunnels. An HTTP/2 session has no use for
      // a half-closed connection and only notices the peer's end once the socket closes, so without
      // this a client that vanished without GOAWAY would keep its tunnels until the idle timeout.
      socket.once('end', () => socket.end());
      server.emit('connection', socket);
    },
    closeSessions(): void {
      for (const session of sessions) session.close();
    },
    destroySessions(): void {
      for (const session of sessions) session.destroy();
    },
  };
}

async function handleStream(
  options: Http2FrontOptions,
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
) {
  const info = connectionInfoOf(stream.session?.socket);
  // Until a tunnel owns the stream, a reset from the client must not become an unhandled error.
  const onEarlyError = () => {};
  stream.on('error', onEarlyError);
  if (!info) {
    stream.close(constants.NGHTTP2_REFUSED_STREAM);
    return;
  }
  clearRequestTimer(info);
  const method = headers[':method'];
  if (method !== 'CONNECT') {
    options.logger.info(
      { source_identity: info.identity ?? undefined, source_peer_addr: info.peerAddr, method },
      LogEvent.methodNotAllowed,
    );
    reject(stream, 405);
    return;
  }
  try {
    const outcome = await runConnectFlow(options.flow, {
      info,
      rawAuthority: headers[':authority'] ?? '',
      protocol: 'HTTP/2',
      trace: parseTraceparent(headers['traceparent']),
      cancelled: () => stream.destroyed || stream.closed,
    });
    if (outcome.kind === 'cancelled') return;
    if (outcome.kind === 'reject') {
      reject(stream, outcome.status);
      return;
    }
    if (stream.destroyed || stream.closed) {
      abandonTunnel(outcome);
      return;
    }
    stream.respond({ ':status': 200 });
    options.tunnels.start(stream, outcome);
    stream.removeListener('error', onEarlyError);
  } catch (err) {
    options.logger.error(
      { source_peer_addr: info.peerAddr, error: (err as Error).message },
      LogEvent.internalError,
    );
    reject(stream, 502);
  }
}

function reject(stream: ServerHttp2Stream, status: RejectStatus): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond({ ':status': status, 'content-type': 'text/plain; charset=utf-8' });
  stream.end(`${STATUS_BODY[status]}\n`);
}
