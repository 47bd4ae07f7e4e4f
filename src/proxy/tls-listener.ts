import { createServer, type Server, type TLSSocket } from 'node:tls';
import { CertificateError, readClientCertificate } from '../identity/client-certificate.js';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import { attachConnectionInfo, type ConnectionInfo, formatPeer } from './connection-info.js';
import { rotateTicketKeys, sessionTicketOptions, type TicketKeyRotation } from './session-tickets.js';

export interface TlsListenerOptions {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly handshakeTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Lifetime of TLS session tickets, and how often their key is replaced; 0 = no resumption. */
  readonly sessionLifetimeS: number;
  /** DER content bytes of policy.client_ext_oid, encoded once at config load. */
  readonly identityOidContent: Buffer;
  readonly logger: Logger;
  readonly onHttp2: (socket: TLSSocket) => void;
  readonly onHttp1: (socket: TLSSocket) => void;
}

/**
 * The one TLS port. It asks every client for a certificate but trusts no CA (interop: authority
 * lives in the signed registry rows; TLS only proves the client holds the key of the certificate
 * it sent). It reads the identity once per connection, then hands the socket to the HTTP/2 or
 * HTTP/1.1 front end by ALPN.
 */
export function createTlsListener(options: TlsListenerOptions): {
  server: Server;
  tickets: TicketKeyRotation;
} {
  const { logger } = options;
  const server = createServer({
    cert: options.certPem,
    key: options.keyPem,
    requestCert: true,
    // No CA is trusted; OpenSSL still verifies CertificateVerify, i.e. proof of possession.
    rejectUnauthorized: false,
    ALPNProtocols: ['h2', 'http/1.1'],
    handshakeTimeout: options.handshakeTimeoutMs,
    minVersion: 'TLSv1.2',
    // HTTP/1.1 tunnels keep half-close: the client's end must not end our direction to it.
    allowHalfOpen: true,
    // Without it Nagle holds the small "200" until the client's delayed ACK: ~40 ms per new tunnel.
    // (The HTTP/1.1 parser's own noDelay does not reach a socket handed to it from outside.)
    noDelay: true,
    ...sessionTicketOptions(options.sessionLifetimeS),
  });

  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    logger.info(
      {
        source_peer_addr: formatPeer(socket.remoteAddress, socket.remotePort),
        error: err.code ?? err.message,
      },
      LogEvent.tlsHandshakeFailed,
    );
    // With a listener installed Node leaves the socket open (a timed-out handshake would linger).
    socket.destroy();
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const peerAddr = formatPeer(socket.remoteAddress, socket.remotePort);
    const info = identify(socket, peerAddr, options);
    if (!info) return;
    attachConnectionInfo(socket, info);
    info.requestTimer = setTimeout(() => {
      info.requestTimer = undefined;
      logger.info(
        { source_identity: info.identity ?? undefined, source_peer_addr: peerAddr },
        LogEvent.requestTimeout,
      );
      socket.destroy();
    }, options.requestTimeoutMs);
    socket.once('close', () => {
      if (info.requestTimer !== undefined) clearTimeout(info.requestTimer);
    });
    if (socket.alpnProtocol === 'h2') options.onHttp2(socket);
    else options.onHttp1(socket);
  });

  return { server, tickets: rotateTicketKeys(server, options.sessionLifetimeS) };
}

function identify(
  socket: TLSSocket,
  peerAddr: string,
  options: TlsListenerOptions,
): ConnectionInfo | undefined {
  // getPeerCertificate(false).raw is the leaf DER as sent. Under load it costs less than
  // getPeerX509Certificate(): Node's X509Certificate constructor duplicates the certificate, and OpenSSL
  // 3.0 decodes its public key again through the provider decoders (`perf`, bench suite: ~120 us against
  // ~200 us per connection in the gateway process). We parse the bytes ourselves anyway.
  const leaf = socket.getPeerCertificate(false);
  if (!leaf?.raw) {
    refuse(socket, peerAddr, options.logger, 'no_client_certificate', 'the client sent no certificate');
    return undefined;
  }
  try {
    const cert = readClientCertificate(leaf.raw, options.identityOidContent);
    return {
      identity: cert.identity,
      identityProblem: cert.identityProblem,
      spki: cert.spki,
      peerAddr,
      requestTimer: undefined,
    };
  } catch (err) {
    const detail = err instanceof CertificateError ? err.message : String(err);
    refuse(socket, peerAddr, options.logger, 'bad_client_certificate', detail);
    return undefined;
  }
}

function refuse(socket: TLSSocket, peerAddr: string, logger: Logger, reason: string, detail: string): void {
  logger.info(
    { source_peer_addr: peerAddr, deny_reason: reason, deny_detail: detail },
    LogEvent.clientCertificateRefused,
  );
  socket.destroy();
}
