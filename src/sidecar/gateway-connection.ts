import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as h2connect,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { isIP } from 'node:net';
import { checkServerIdentity, type SecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls';
import type { Destination } from '../destination/normalize.js';
import type { Logger } from '../observability/logger.js';
import { backoffDelayMs } from './backoff.js';
import { CANCELLED, sendConnect, type TunnelRequestResult } from './connect-stream.js';
import { SidecarEvent } from './events.js';
import { describeGatewayError } from './gateway-errors.js';

/**
 * The one mTLS HTTP/2 connection to the gateway that carries every tunnel of this agent as a
 * CONNECT stream. One connection means one handshake (and one identity check at the gateway) for
 * all tunnels, and the agent key is used by this process only.
 *
 * Lifecycle: opened on the first CONNECT; kept alive with HTTP/2 PING (a silently dead path is
 * noticed within keepalive interval + timeout, not at the next tunnel); forgotten when it breaks or
 * the gateway sends GOAWAY (streams already on it continue); re-opened on demand, with exponential
 * backoff between failed attempts so a down gateway is not hammered. Concurrent requests share one
 * attempt.
 *
 * New credentials (SIGHUP, `replaceCredentials`) are presented at once, not at the next reconnect: the
 * one connection may live for days, and a rotated key usually means the gateway's permission rows now
 * name the new key (and may no longer name the old one). So a new connection is opened right away and
 * takes every new tunnel; the old one keeps its tunnels and is closed (GOAWAY) when the last of them
 * ends. Not before: a GOAWAY makes the gateway close the connection shortly after, tunnels and all.
 */
export interface GatewayConnectionOptions {
  readonly gateway: Destination;
  /** The name the server certificate must carry (also sent as SNI unless it is an IP). */
  readonly serverName: string;
  /** CA, agent certificate chain and key (a file's or a token's), from loadAgentCredentials. */
  readonly secureContext: SecureContext;
  readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveTimeoutMs: number;
  readonly reconnectMaxMs: number;
  readonly logger: Logger;
}

// Per-stream and per-connection receive windows: Node's 64 KiB defaults halve a tunnel's throughput
// (measured: ~300 against ~500-580 MB/s on one tunnel); 1 MiB per stream is also the most one paused tunnel can make us buffer.
const STREAM_WINDOW_BYTES = 1 << 20;
const CONNECTION_WINDOW_BYTES = 32 << 20;
const FIRST_RETRY_DELAY_MS = 100;

/** What replaceCredentials did with the connection in use. */
export type CredentialSwitch =
  /** A new connection with the new credentials carries new tunnels; the old one closes when idle. */
  | { readonly connection: 'replaced' }
  /** No connection was open: the next one presents the new credentials. */
  | { readonly connection: 'next' }
  /** The new connection failed: the open one (old credentials) stays in use until it breaks. */
  | { readonly connection: 'kept'; readonly reason: string };

/** What the class knows about each of its open connections. */
interface Live {
  readonly context: SecureContext;
  /** CONNECT streams sent on it and not yet closed. */
  streams: number;
  /** Replaced: no new tunnels; closed once `streams` is 0. */
  retired: boolean;
}

export class GatewayConnection {
  private session: ClientHttp2Session | undefined;
  private opening: Promise<ClientHttp2Session> | undefined;
  private failures = 0;
  private nextAttemptAt = 0;
  private closing = false;
  private wakeBackoff: (() => void) | undefined;
  private readonly address: string;
  private secureContext: SecureContext;
  private readonly live = new Map<ClientHttp2Session, Live>();
  private readonly unusedWaiters: Array<{ context: SecureContext; resolve: () => void }> = [];

  constructor(private readonly options: GatewayConnectionOptions) {
    this.address = options.gateway.authority;
    this.secureContext = options.secureContext;
  }

  /**
   * SIGHUP's new credentials: every connection from now on presents them. A connection in use is
   * replaced at once (see the class comment); its tunnels run on over it until they end.
   */
  async replaceCredentials(secureContext: SecureContext): Promise<CredentialSwitch> {
    this.secureContext = secureContext;
    // A connection being opened was dialled with the old context: let it finish, then replace it too.
    await this.opening?.catch(() => undefined);
    const old = this.session;
    if (old === undefined || old.closed || old.destroyed || this.closing) return { connection: 'next' };
    let fresh: ClientHttp2Session;
    try {
      fresh = await this.open();
    } catch (error) {
      const reason = describeGatewayError(error);
      this.options.logger.warn(
        { gateway_addr: this.address, error: reason, consecutive_failures: this.failures },
        SidecarEvent.gatewayConnectFailed,
      );
      return { connection: 'kept', reason };
    }
    if (this.closing) {
      fresh.destroy();
      return { connection: 'next' };
    }
    this.session = fresh;
    this.retire(old);
    return { connection: 'replaced' };
  }

  /** Resolves once no open connection uses `context` and new ones will not (its key may then go). */
  whenUnused(context: SecureContext): Promise<void> {
    if (this.unused(context)) return Promise.resolve();
    return new Promise((resolve) => this.unusedWaiters.push({ context, resolve }));
  }

  /**
   * Sends `CONNECT authority` with `headers` and waits for the gateway's answer. A CONNECT whose
   * connection died before the gateway could act on it is retried once on a fresh connection;
   * the client has sent no tunnel bytes yet, so the retry is invisible to it.
   *
   * `signal` is the local client's departure: when it fires before the answer, the stream is reset with
   * CANCEL at once, so the gateway stops deciding, drops its dial and frees the identity's tunnel slot.
   */
  async request(
    authority: string,
    headers: OutgoingHttpHeaders,
    signal?: AbortSignal,
  ): Promise<TunnelRequestResult> {
    let firstReason: string | undefined;
    for (;;) {
      if (signal?.aborted) return CANCELLED;
      let session: ClientHttp2Session;
      try {
        session = await this.currentSession();
      } catch (error) {
        const reason = `cannot reach the agent-gateway at ${this.address}: ${describeGatewayError(error)}`;
        return { kind: 'failed', status: 502, reason };
      }
      if (signal?.aborted) return CANCELLED;
      const attempt = await sendConnect(session, authority, headers, {
        timeoutMs: this.options.requestTimeoutMs,
        ...(signal === undefined ? {} : { signal }),
        onStream: (stream) => this.countStream(session, stream),
      });
      if (attempt.kind !== 'not-started') return attempt;
      this.forget(session);
      if (firstReason !== undefined) {
        return {
          kind: 'failed',
          status: 502,
          reason:
            `the connection to the agent-gateway at ${this.address} closed before it answered, twice ` +
            `(${attempt.reason}); if this repeats, the gateway may be refusing the agent certificate ` +
            "(look for 'client certificate refused' in its log)",
        };
      }
      firstReason = attempt.reason;
      this.options.logger.info(
        { dest_authority: authority, reason: attempt.reason },
        SidecarEvent.connectRetried,
      );
    }
  }

  /** Stop opening connections; let the current one finish its streams. */
  close(): void {
    this.closing = true;
    this.wakeBackoff?.();
    this.session?.close();
    this.wakeUnusedWaiters();
  }

  /** Drop every connection now (and every stream on them). */
  destroy(): void {
    this.close();
    for (const session of [this.session, ...this.live.keys()]) session?.destroy();
  }

  private currentSession(): Promise<ClientHttp2Session> {
    const current = this.session;
    if (current !== undefined && !current.closed && !current.destroyed) return Promise.resolve(current);
    this.opening ??= this.openWithBackoff().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async openWithBackoff(): Promise<ClientHttp2Session> {
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0 && !this.closing) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.wakeBackoff = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeBackoff = undefined;
    }
    if (this.closing) throw new Error('the sidecar is shutting down');
    try {
      const session = await this.open();
      this.failures = 0;
      this.nextAttemptAt = 0;
      this.session = session;
      return session;
    } catch (error) {
      this.failures++;
      const delay = backoffDelayMs(this.failures, {
        initialMs: FIRST_RETRY_DELAY_MS,
        maxMs: this.options.reconnectMaxMs,
      });
      this.nextAttemptAt = Date.now() + delay;
      this.options.logger.warn(
        {
          gateway_addr: this.address,
          error: describeGatewayError(error),
          consecutive_failures: this.failures,
          next_attempt_in_ms: delay,
        },
        SidecarEvent.gatewayConnectFailed,
      );
      throw error;
    }
  }

  private open(): Promise<ClientHttp2Session> {
    const { options } = this;
    const context = this.secureContext;
    const socket = this.dialTls(context);
    return new Promise((resolve, reject) => {
      const session = h2connect(`https://${options.gateway.authority}`, {
        createConnection: () => socket,
        settings: { initialWindowSize: STREAM_WINDOW_BYTES, enablePush: false },
        // Node's 10 MB default counts buffered stream data; 32 tunnels at full speed exceed it.
        maxSessionMemory: 64,
      });
      const fail = (error: Error) => {
        session.off('connect', ready);
        session.destroy();
        reject(error);
      };
      const closedEarly = () => fail(new Error('the connection closed during the TLS handshake'));
      const ready = () => {
        session.off('error', fail);
        session.off('close', closedEarly);
        if (socket.alpnProtocol !== 'h2') {
          session.destroy();
          reject(new Error(`the gateway did not agree to HTTP/2 (ALPN ${String(socket.alpnProtocol)})`));
          return;
        }
        session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
        this.watch(session, socket, context);
        resolve(session);
      };
      session.once('connect', ready);
      session.once('error', fail);
      session.once('close', closedEarly);
    });
  }

  private dialTls(secureContext: SecureContext): TLSSocket {
    const { options } = this;
    const name = options.serverName;
    const socket = tlsConnect({
      host: options.gateway.host,
      port: options.gateway.port,
      secureContext,
      // SNI carries names only; an IP is still checked against the certificate below.
      ...(isIP(name) === 0 ? { servername: name } : {}),
      checkServerIdentity: (_host, cert) => checkServerIdentity(name, cert),
      ALPNProtocols: ['h2'],
    });
    socket.setTimeout(options.connectTimeoutMs, () => {
      const error: NodeJS.ErrnoException = new Error(
        `no TLS handshake within ${options.connectTimeoutMs} ms (sidecar.connect_timeout_ms)`,
      );
      error.code = 'ETIMEDOUT';
      socket.destroy(error);
    });
    socket.once('secureConnect', () => socket.setTimeout(0));
    return socket;
  }

  /** Logs the connection's life, keeps it alive with PINGs, and tracks its streams and credentials. */
  private watch(session: ClientHttp2Session, socket: TLSSocket, context: SecureContext): void {
    const { logger } = this.options;
    const localAddr = `${socket.localAddress}:${socket.localPort}`;
    logger.info({ gateway_addr: this.address, local_addr: localAddr }, SidecarEvent.gatewayConnected);
    const live: Live = { context, streams: 0, retired: false };
    this.live.set(session, live);
    let lastError: string | undefined;
    session.on('error', (error) => {
      lastError = describeGatewayError(error);
    });
    session.on('goaway', (code: number) => {
      // The gateway is draining (restart, shutdown): new tunnels go to a new connection.
      lastError ??= `GOAWAY (HTTP/2 error code ${code})`;
      this.forget(session);
    });
    const stopKeepalive = this.keepalive(session);
    session.once('close', () => {
      stopKeepalive();
      this.forget(session);
      this.live.delete(session);
      this.wakeUnusedWaiters();
      const reason = lastError ?? (live.retired ? 'replaced: new credentials' : 'closed');
      logger.info(
        { gateway_addr: this.address, local_addr: localAddr, reason },
        SidecarEvent.gatewayDisconnected,
      );
    });
  }

  /** No new tunnels on `session`; GOAWAY once its last tunnel has ended. */
  private retire(session: ClientHttp2Session): void {
    const live = this.live.get(session);
    this.forget(session);
    if (live === undefined) return;
    live.retired = true;
    if (live.streams === 0) session.close();
  }

  private unused(context: SecureContext): boolean {
    if (context === this.secureContext && !this.closing) return false;
    for (const live of this.live.values()) if (live.context === context) return false;
    return true;
  }

  private wakeUnusedWaiters(): void {
    for (const waiter of [...this.unusedWaiters]) {
      if (!this.unused(waiter.context)) continue;
      this.unusedWaiters.splice(this.unusedWaiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  }

  private keepalive(session: ClientHttp2Session): () => void {
    const { keepaliveIntervalMs, keepaliveTimeoutMs, logger } = this.options;
    let deadline: NodeJS.Timeout | undefined;
    const interval = setInterval(() => {
      if (deadline !== undefined || session.destroyed) return;
      deadline = setTimeout(() => {
        logger.warn(
          { gateway_addr: this.address, timeout_ms: keepaliveTimeoutMs },
          SidecarEvent.keepaliveTimeout,
        );
        session.destroy(new Error(`keepalive PING not answered within ${keepaliveTimeoutMs} ms`));
      }, keepaliveTimeoutMs);
      deadline.unref();
      const answered = () => {
        clearTimeout(deadline);
        deadline = undefined;
      };
      try {
        session.ping(answered);
      } catch {
        answered();
      }
    }, keepaliveIntervalMs);
    interval.unref();
    return () => {
      clearInterval(interval);
      clearTimeout(deadline);
    };
  }

  /** A CONNECT stream was sent on `session`: a retired connection closes after its last one. */
  private countStream(session: ClientHttp2Session, stream: ClientHttp2Stream): void {
    const live = this.live.get(session);
    if (live === undefined) return;
    live.streams += 1;
    stream.once('close', () => {
      live.streams -= 1;
      if (live.retired && live.streams === 0) session.close();
    });
  }

  private forget(session: ClientHttp2Session): void {
    if (this.session === session) this.session = undefined;
  }
}
