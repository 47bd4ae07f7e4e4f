import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { createServer, type SecureContextOptions, type Server, type TLSSocket } from 'node:tls';
import { CertificateError, readClientCertificate } from '../identity/client-certificate.js';
import type { GatewayEvents } from '../session/events.js';
import { type ConnectionCaps, ConnectionCounter } from './connection-caps.js';
import { attachConnectionInfo, type ConnectionInfo, disarmIdle, formatPeer } from './connection-info.js';
import { rotateTicketKeys, sessionTicketOptions, type TicketKeyRotation } from './session-tickets.js';

export interface TlsListenerOptions {
  readonly certPem: Buffer;
  readonly keyPem: Buffer;
  readonly handshakeTimeoutMs: number;
  /** A connection with no CONNECT in flight and no tunnel open for this long is closed. */
  readonly requestTimeoutMs: number;
  /** Lifetime of TLS session tickets, and how often their key is replaced; 0 = no resumption. */
  readonly sessionLifetimeS: number;
  /** DER content bytes of policy.client_ext_oid, encoded once at config load. */
  readonly identityOidContent: Buffer;
  readonly caps: ConnectionCaps;
  readonly events: GatewayEvents;
  readonly onHttp2: (socket: TLSSocket, info: ConnectionInfo) => void;
  readonly onHttp1: (socket: TLSSocket, info: ConnectionInfo) => void;
}

/** The client's address, read when the TCP connection arrives (later reads fail once it is reset). */
const PEER = Symbol('agent-gateway.peer');
type WithPeer = { [PEER]?: string };

/**
 * The one TLS port. It asks every client for a certificate but trusts no CA (interop: authority
 * lives in the signed registry rows; TLS only proves the client holds the key of the certificate
 * it sent). It caps connections in total and per source address before any TLS work, reads the identity
 * once per connection, then hands the socket to the HTTP/2 or HTTP/1.1 front end by ALPN.
 */
export function createTlsListener(options: TlsListenerOptions): {
  server: Server;
  tickets: TicketKeyRotation;
  counter: ConnectionCounter;
  /** Serves this certificate and key from the next handshake on; open connections keep theirs. */
  replaceCertificate(material: { readonly certPem: Buffer; readonly keyPem: Buffer }): void;
} {
  const { events } = options;
  const lifetimeS = options.sessionLifetimeS;
  const server = createServer({
    ...secureContextOptions(options, lifetimeS),
    requestCert: true,
    // No CA is trusted; OpenSSL still verifies CertificateVerify, i.e. proof of possession.
    rejectUnauthorized: false,
    ALPNProtocols: ['h2', 'http/1.1'],
    handshakeTimeout: options.handshakeTimeoutMs,
    // HTTP/1.1 tunnels keep half-close: the client's end must not end our direction to it.
    allowHalfOpen: true,
    // Without it Nagle holds the small "200" until the client's delayed ACK: ~40 ms per new tunnel.
    // (The HTTP/1.1 parser's own noDelay does not reach a socket handed to it from outside.)
    noDelay: true,
  });
  const counter = new ConnectionCounter(options.caps);

  // The raw TCP socket, before any TLS byte is read: the cheapest point to refuse a flood.
  server.on('connection', (socket: Socket) => {
    const peerAddr = formatPeer(socket.remoteAddress, socket.remotePort);
    (socket as WithPeer)[PEER] = peerAddr;
    // Read now: after a reset the address is gone, and the count must be released under the same key.
    const source = socket.remoteAddress ?? 'unknown';
    const refused = counter.admit(source);
    if (refused !== undefined) {
      events.emit('connectionRefused', { peerAddr, reason: refused.reason, detail: refused.detail });
      socket.destroy();
      return;
    }
    socket.once('close', () => counter.release(source));
  });

  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    events.emit('handshakeFailed', { peerAddr: peerOf(socket), error: err.code ?? err.message });
    // With a listener installed Node leaves the socket open (a timed-out handshake would linger).
    socket.destroy();
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const peerAddr = peerOf(socket);
    const info = identify(socket, peerAddr, options);
    if (!info) return;
    attachConnectionInfo(socket, info);
    const alpn = socket.alpnProtocol === 'h2' ? 'h2' : 'http/1.1';
    events.emit('handshakeCompleted', { peerAddr, alpn, resumed: socket.isSessionReused() });
    info.armIdle = () => {
      if (info.idleTimer !== undefined) clearTimeout(info.idleTimer);
      info.idleTimer = setTimeout(() => {
        info.idleTimer = undefined;
        events.emit('connectionIdle', { peerAddr, identity: info.identity, reason: 'request_timeout' });
        socket.destroy();
      }, options.requestTimeoutMs);
    };
    info.armIdle();
    socket.once('close', () => disarmIdle(info));
    if (alpn === 'h2') options.onHttp2(socket, info);
    else options.onHttp1(socket, info);
  });

  return {
    server,
    tickets: rotateTicketKeys(server, lifetimeS),
    counter,
    replaceCertificate(material) {
      // setSecureContext builds a new context from these options alone: whatever is left out falls back
      // to Node's default (tickets back on with lifetime 0) or to the constructor's value (the ticket key
      // the server started with, long rotated out). So the same options as at start, and the ticket key
      // in force now: tickets issued before the reload keep resuming until the next rotation, which
      // keeps its schedule. A resumed session uses neither the certificate nor its key.
      server.setSecureContext({
        ...secureContextOptions(material, lifetimeS),
        ...(lifetimeS > 0 ? { ticketKeys: server.getTicketKeys() } : {}),
      });
    },
  };
}

/** What lives in the listener's TLS context (what setSecureContext replaces): the same at start and reload. */
function secureContextOptions(
  material: { readonly certPem: Buffer; readonly keyPem: Buffer },
  sessionLifetimeS: number,
): SecureContextOptions {
  return {
    cert: material.certPem,
    key: material.keyPem,
    minVersion: 'TLSv1.2',
    ...sessionTicketOptions(sessionLifetimeS),
  };
}

/**
 * The peer as read when its TCP connection arrived. The TLS socket wraps that raw socket (`_parent`, a
 * Node internal since v0.x); its own remoteAddress is gone once the peer reset the connection, which is
 * exactly when a handshake failure is logged.
 */
function peerOf(socket: TLSSocket): string {
  const parent = (socket as unknown as { _parent?: WithPeer })._parent;
  return parent?.[PEER] ?? formatPeer(socket.remoteAddress, socket.remotePort);
}

function identify(
  socket: TLSSocket,
  peerAddr: string,
  options: TlsListenerOptions,
): ConnectionInfo | undefined {
  // getPeerCertificate(false).raw is the leaf DER as sent. Under load it costs less than
  // getPeerX509Certificate(): Node's X509Certificate constructor duplicates the certificate, and OpenSSL
  // decodes its public key again through the provider decoders (`perf`, bench suite: ~120 us against
  // ~200 us per connection in the gateway process on Node 20). We parse the bytes ourselves anyway.
  const leaf = socket.getPeerCertificate(false);
  if (!leaf?.raw) {
    refuse(socket, peerAddr, options.events, 'no_client_certificate', 'the client sent no certificate');
    return undefined;
  }
  try {
    const cert = readClientCertificate(leaf.raw, options.identityOidContent);
    return {
      identity: cert.identity,
      identityProblem: cert.identityProblem,
      claimedIdentity: cert.claimedIdentity,
      spki: cert.spki,
      spkiFingerprint: createHash('sha256').update(cert.spki).digest('hex'),
      peerAddr,
      busy: 0,
      idleTimer: undefined,
      armIdle: () => {},
    };
  } catch (err) {
    const detail = err instanceof CertificateError ? err.message : String(err);
    refuse(socket, peerAddr, options.events, 'bad_client_certificate', detail);
    return undefined;
  }
}

function refuse(
  socket: TLSSocket,
  peerAddr: string,
  events: GatewayEvents,
  reason: 'no_client_certificate' | 'bad_client_certificate',
  detail: string,
): void {
  events.emit('connectionRefused', { peerAddr, reason, detail });
  socket.destroy();
}
