import type { TLSSocket } from 'node:tls';
import type { IdentityProblem } from '../identity/client-certificate.js';

/**
 * What the gateway learnt about a client at the TLS handshake, parsed once per connection and
 * read by every CONNECT on it (one for HTTP/1.1, many streams for HTTP/2).
 */
export interface ConnectionInfo {
  /** The identity extension's value; null when missing or malformed (every CONNECT is then denied). */
  readonly identity: string | null;
  readonly identityProblem: IdentityProblem | null;
  /** The leaf's subjectPublicKeyInfo exactly as sent. */
  readonly spki: Buffer;
  /** `ip:port` of the client, for logs. */
  readonly peerAddr: string;
  /**
   * Closes the connection if no complete request head arrives in time (server.request_timeout_ms);
   * cleared by the front end when the first CONNECT (HTTP/1.1) or stream (HTTP/2) arrives.
   */
  requestTimer: NodeJS.Timeout | undefined;
}

export function clearRequestTimer(info: ConnectionInfo): void {
  if (info.requestTimer !== undefined) {
    clearTimeout(info.requestTimer);
    info.requestTimer = undefined;
  }
}

// A symbol property rather than a WeakMap: HTTP/2 hands out a Proxy of the socket
// (session.socket), which forwards property reads to the real socket but is not the same
// object as a WeakMap key.
const CONNECTION_INFO = Symbol('agent-gateway.connection-info');

type Tagged = { [CONNECTION_INFO]?: ConnectionInfo };

export function attachConnectionInfo(socket: TLSSocket, info: ConnectionInfo): void {
  (socket as unknown as Tagged)[CONNECTION_INFO] = info;
}

export function connectionInfoOf(socket: object | null | undefined): ConnectionInfo | undefined {
  return socket ? (socket as Tagged)[CONNECTION_INFO] : undefined;
}

export function formatPeer(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return 'unknown';
  return address.includes(':') ? `[${address}]:${port ?? 0}` : `${address}:${port ?? 0}`;
}
