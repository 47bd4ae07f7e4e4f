import type { Server, TLSSocket } from 'node:tls';
import type { LoadedConfig } from '../config/load.js';
import type { TlsMaterial } from '../config/tls-material.js';
import type { Logger } from '../observability/logger.js';
import type { ConnectFlowDeps } from '../proxy/connect-flow.js';
import { createHttp1Front } from '../proxy/http1-front.js';
import { createHttp2Front, type Http2Front } from '../proxy/http2-front.js';
import type { OpenTunnels } from '../proxy/open-tunnels.js';
import { createTlsListener } from '../proxy/tls-listener.js';
import type { RateLimiter } from '../ratelimit/limiter.js';
import { streamWindowForUpload } from '../ratelimit/stream-window.js';
import type { GatewayEvents } from '../session/events.js';

/** The agents' port: the TLS listener and the two front ends behind it, not yet listening. */
export interface Fronts {
  readonly server: Server;
  readonly http2: Http2Front;
  /** Every TLS connection handed to a front end and not yet closed (shutdown walks them). */
  readonly sockets: ReadonlySet<TLSSocket>;
  /** The certificate and key new handshakes get. */
  readonly certificate: TlsMaterial;
  /** SIGHUP: new handshakes get `material`; open connections and their tunnels are untouched. */
  setCertificate(material: TlsMaterial): void;
}

export function createFronts(deps: {
  readonly loaded: LoadedConfig;
  readonly tls: TlsMaterial;
  readonly flow: ConnectFlowDeps;
  readonly tunnels: OpenTunnels;
  readonly events: GatewayEvents;
  readonly logger: Logger;
  readonly limiter: RateLimiter;
}): Fronts {
  const { config } = deps.loaded;
  const { flow, tunnels, events, logger, limiter } = deps;
  const http1 = createHttp1Front({ flow, tunnels, events, logger, maxHeaderBytes: 16 * 1024 });
  const http2 = createHttp2Front({
    flow,
    tunnels,
    events,
    logger,
    maxConcurrentStreams: config.server.h2_max_concurrent_streams,
    streamWindowBytes: config.server.h2_stream_window_bytes,
    connectionWindowBytes: config.server.h2_connection_window_bytes,
    maxHeaderListBytes: 16 * 1024,
    resetBurst: config.server.h2_reset_burst,
    resetRatePerS: config.server.h2_reset_rate_per_s,
    streamWindowFor: (identity) =>
      identity === null
        ? config.server.h2_stream_window_bytes
        : streamWindowForUpload(limiter.uploadLimitsOf(identity), config.server.h2_stream_window_bytes),
  });
  const sockets = new Set<TLSSocket>();
  const track = (socket: TLSSocket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const listener = createTlsListener({
    certPem: deps.tls.certPem,
    keyPem: deps.tls.keyPem,
    handshakeTimeoutMs: config.server.handshake_timeout_ms,
    requestTimeoutMs: config.server.request_timeout_ms,
    sessionLifetimeS: config.server.tls_session_lifetime_s,
    identityOidContent: deps.loaded.identityOidContent,
    caps: {
      maxConnections: config.server.max_connections,
      maxPerSource: config.server.max_connections_per_source,
    },
    events,
    onHttp1: (socket) => {
      track(socket);
      http1.accept(socket);
    },
    onHttp2: (socket) => {
      track(socket);
      http2.accept(socket);
    },
  });
  let certificate = deps.tls;
  return {
    server: listener.server,
    http2,
    sockets,
    get certificate() {
      return certificate;
    },
    setCertificate(material) {
      listener.replaceCertificate(material);
      certificate = material;
    },
  };
}
