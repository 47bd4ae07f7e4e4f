import {
  constants,
  createServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { GatewayEvents } from '../session/events.js';
import { parseTraceContext } from '../tracecontext/traceparent.js';
import { newAttempt } from './connect-attempt.js';
import { abandonTunnel, type ConnectFlowDeps, reject, runConnectFlow } from './connect-flow.js';
import { type ConnectionInfo, connectionInfoOf, markBusy, markIdle } from './connection-info.js';
import type { OpenTunnels } from './open-tunnels.js';
import { type RejectStatus, STATUS_BODY } from './responses.js';

export interface Http2FrontOptions {
  readonly flow: ConnectFlowDeps;
  readonly tunnels: OpenTunnels;
  readonly events: GatewayEvents;
  readonly logger: Logger;
  readonly maxConcurrentStreams: number;
  readonly streamWindowBytes: number;
  readonly connectionWindowBytes: number;
  readonly maxHeaderListBytes: number;
  /** RST_STREAMs a client may send at once, then per second, before GOAWAY (rapid reset). */
  readonly resetBurst: number;
  readonly resetRatePerS: number;
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
 * How long a session may linger once its client has ended its side (TCP FIN) or it was answered with
 * GOAWAY: enough to flush what is in flight, then the socket goes, whatever its streams are doing. A
 * client that half-closes can send no more WINDOW_UPDATE, so back-pressured streams would never finish.
 */
const SESSION_LINGER_MS = 2000;

/** The tunnels of one HTTP/2 connection, so that they all end with it. */
const SESSION_TUNNELS = Symbol('agent-gateway.session-tunnels');
type WithTunnels = { [SESSION_TUNNELS]?: Set<string> };

/**
 * The TLS socket under a session. `session.socket` is a Proxy that forwards reads to it while the session
 * is bound, and stops reaching it once the session is closed, which is when the socket must still go.
 */
const TLS_SOCKET = Symbol('agent-gateway.tls-socket');
type WithTlsSocket = { [TLS_SOCKET]?: TLSSocket };

/**
 * HTTP/2 CONNECT: many tunnels per TLS connection, one stream each. Node's HTTP/2 engine runs over
 * the TLS socket our listener accepted; flow control does the backpressure: a paused stream stops
 * granting window, so the client cannot send more than one stream window ahead. A session's tunnels
 * end with it, however it ends (GOAWAY, a reset socket, a client that vanished while its streams were
 * back-pressured), and its socket is destroyed once the session is done.
 */
export function createHttp2Front(options: Http2FrontOptions): Http2Front {
  const { logger, tunnels } = options;
  const sessions = new Set<ServerHttp2Session>();
  const server: Http2Server = createServer({
    settings: {
      maxConcurrentStreams: options.maxConcurrentStreams,
      initialWindowSize: options.streamWindowBytes,
      maxHeaderListSize: options.maxHeaderListBytes,
      enablePush: false,
    },
    maxHeaderListPairs: 64,
    // Node 22.14+/24 pass these to nghttp2's stream reset rate limit (Node 20 kept its 1000/33).
    streamResetBurst: options.resetBurst,
    streamResetRate: options.resetRatePerS,
  });

  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    const ids = new Set<string>();
    (session as WithTunnels)[SESSION_TUNNELS] = ids;
    // Set on the socket by accept(); read through the Proxy, kept on the session for after its close.
    const socket = (session.socket as WithTlsSocket | null)?.[TLS_SOCKET];
    (session as WithTlsSocket)[TLS_SOCKET] = socket;
    session.on('close', () => {
      sessions.delete(session);
      // Node destroys the streams of a destroyed session, but not always the tunnels' upstream sockets
      // in time, and a session closed by GOAWAY with streams stuck on flow control never ends them.
      tunnels.closeSessions(ids, 'aborted', 'its HTTP/2 connection closed');
      socket?.destroy();
    });
    session.on('error', (err) => {
      const info = connectionInfoOf(session.socket);
      logger.info({ source_peer_addr: info?.peerAddr, error: err.message }, LogEvent.http2SessionError);
    });
    session.on('goaway', () => lingerThenDestroy(session));
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
      (socket as WithTlsSocket)[TLS_SOCKET] = socket;
      // The listener keeps TLS sockets half-open for HTTP/1.1 tunnels. An HTTP/2 session has no use for
      // a half-closed connection and only notices the peer's end once the socket closes, so end our side
      // too, and do not wait for back-pressured streams to drain to a client that can no longer read.
      socket.once('end', () => {
        socket.end();
        setTimeout(() => socket.destroy(), SESSION_LINGER_MS).unref();
      });
      socket.once('close', () => {
        for (const session of sessions)
          if (session.socket === null || session.destroyed) sessions.delete(session);
      });
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

/**
 * Lets a session that is done flush for SESSION_LINGER_MS, then destroys it and its socket. The socket
 * itself, not only the session: after a graceful close (GOAWAY) Node merely ends the socket, and the
 * listener keeps sockets half-open (for HTTP/1.1 tunnels), so a client that never ends its side (one that
 * ignores GOAWAY) would hold the connection for as long as it likes.
 */
function lingerThenDestroy(session: Http2Session): void {
  const socket = (session as WithTlsSocket)[TLS_SOCKET];
  setTimeout(() => {
    if (!session.destroyed) session.destroy();
    socket?.destroy();
  }, SESSION_LINGER_MS).unref();
}

async function handleStream(
  options: Http2FrontOptions,
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
) {
  const session = stream.session;
  const info = connectionInfoOf(session?.socket);
  // Until a tunnel owns the stream, a reset from the client must not become an unhandled error.
  const onEarlyError = () => {};
  stream.on('error', onEarlyError);
  if (!info || !session) {
    stream.close(constants.NGHTTP2_REFUSED_STREAM);
    return;
  }
  const attempt = newAttempt(
    info,
    'HTTP/2',
    headers[':authority'] ?? '',
    parseTraceContext(headers['traceparent'], headers['tracestate']),
  );
  const method = headers[':method'];
  if (method !== 'CONNECT') {
    // Not work: a refused stream does not keep the connection from idling out.
    reject(options.events, attempt, 405, { kind: 'method_not_allowed' }, undefined, { method });
    respond(stream, 405);
    closeIfUseless(session, info);
    return;
  }
  markBusy(info);
  let started = false;
  try {
    const outcome = await runConnectFlow(options.flow, {
      attempt,
      cancelled: () => stream.destroyed || stream.closed,
    });
    if (outcome.kind === 'cancelled') return;
    if (outcome.kind === 'reject') {
      respond(stream, outcome.status, outcome.retryAfterS);
      closeIfUseless(session, info);
      return;
    }
    if (stream.destroyed || stream.closed || session.destroyed) {
      abandonTunnel(options.events, outcome);
      return;
    }
    stream.respond({ ':status': 200 });
    const ids = (session as WithTunnels)[SESSION_TUNNELS];
    let id = '';
    const tunnelSession = options.tunnels.start(stream, outcome, () => {
      ids?.delete(id);
      markIdle(info);
    });
    id = tunnelSession.id;
    ids?.add(id);
    started = true;
    stream.removeListener('error', onEarlyError);
  } catch (err) {
    internalError(options, info, err);
    respond(stream, 502);
  } finally {
    if (!started) markIdle(info);
  }
}

/**
 * A certificate without a valid identity can never be granted a tunnel: after its first refusal the
 * connection is closed instead of letting the client keep it open with PINGs and refused streams.
 */
function closeIfUseless(session: Http2Session, info: ConnectionInfo): void {
  if (info.identity !== null || session.closed || session.destroyed) return;
  session.close();
  lingerThenDestroy(session);
}

function internalError(options: Http2FrontOptions, info: ConnectionInfo, err: unknown): void {
  options.logger.error(
    { source_peer_addr: info.peerAddr, error: (err as Error).message },
    LogEvent.internalError,
  );
}

/** A refusal on one stream; `retryAfterS` (a spent quota) adds `retry-after`. */
function respond(stream: ServerHttp2Stream, status: RejectStatus, retryAfterS?: number): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond({
    ':status': status,
    'content-type': 'text/plain; charset=utf-8',
    ...(retryAfterS === undefined ? {} : { 'retry-after': String(retryAfterS) }),
  });
  stream.end(`${STATUS_BODY[status]}\n`);
}
