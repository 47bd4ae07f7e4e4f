import type { TLSSocket } from 'node:tls';
import type { IdentityProblem } from '../identity/client-certificate.js';

/**
 * What the gateway learnt about a client at the TLS handshake, parsed once per connection and read by
 * every CONNECT on it (one for HTTP/1.1, many streams for HTTP/2), plus how busy the connection is.
 */
export interface ConnectionInfo {
  /** The identity extension's value; null when missing or malformed (every CONNECT is then denied). */
  readonly identity: string | null;
  readonly identityProblem: IdentityProblem | null;
  /** The malformed identity extension's raw value, for the audit trail only. */
  readonly claimedIdentity: Buffer | null;
  /** The leaf's subjectPublicKeyInfo exactly as sent. */
  readonly spki: Buffer;
  /** SHA-256 of `spki`, lower-case hex. */
  readonly spkiFingerprint: string;
  /** `ip:port` of the client, for logs. */
  readonly peerAddr: string;
  /** CONNECTs being decided plus tunnels open on this connection. */
  busy: number;
  /**
   * Closes the connection once it has had nothing to do for server.request_timeout_ms: armed at the
   * handshake and whenever `busy` drops to 0. Only CONNECTs and tunnels count as work, not PINGs, SETTINGS
   * or refused requests, so a client cannot hold a connection it can never use.
   */
  idleTimer: NodeJS.Timeout | undefined;
  /** Arms `idleTimer` (set by the listener, which knows the timeout and how to close). */
  armIdle: () => void;
}

/** A CONNECT on this connection starts (or a tunnel opens): it is not idle. */
export function markBusy(info: ConnectionInfo): void {
  info.busy++;
  if (info.idleTimer !== undefined) {
    clearTimeout(info.idleTimer);
    info.idleTimer = undefined;
  }
}

/** A CONNECT was refused, or a tunnel closed: the connection is idle again once nothing else runs. */
export function markIdle(info: ConnectionInfo): void {
  if (info.busy > 0) info.busy--;
  if (info.busy === 0) info.armIdle();
}

/** The connection is gone: its timer must not fire. */
export function disarmIdle(info: ConnectionInfo): void {
  if (info.idleTimer !== undefined) clearTimeout(info.idleTimer);
  info.idleTimer = undefined;
  info.armIdle = () => {};
}

/** True until the connection's first CONNECT (shutdown drops such connections at once). */
export function neverUsed(info: ConnectionInfo): boolean {
  return info.busy === 0;
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
