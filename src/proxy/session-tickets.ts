import { constants, randomBytes } from 'node:crypto';
import type { Server, TlsOptions } from 'node:tls';

/**
 * TLS session resumption by stateless tickets, so a returning agent skips the full mTLS handshake (the
 * asymmetric work that dominates opening a tunnel on a new connection).
 *
 * What a resumed connection keeps: the client certificate of the handshake that issued the ticket.
 * OpenSSL stores it in the ticket's encrypted session, so the identity and exact key read from it are
 * the ones that were proven by CertificateVerify then. Authorization is not part of the session: every
 * CONNECT on a resumed connection is decided like any other (by the registry, or by the decision cache
 * while the live check keeps it valid), and its tunnels are re-validated like any other.
 *
 * The ticket key is random per process, never written anywhere, and replaced every `lifetimeS` seconds
 * (the tickets' own lifetime): a ticket older than that no longer decrypts and its client does a full
 * handshake. Node holds one ticket key at a time, so a ticket issued just before a rotation lives
 * shorter than its lifetime hint; that costs one handshake, never a wrong answer. Gateways behind a
 * load balancer do not share keys, so a client that lands on another instance also does a full
 * handshake. `lifetimeS = 0` turns tickets off (no resumption at all). A certificate replaced on SIGHUP
 * (tls-listener.ts) keeps the ticket key in force and the rotation schedule: tickets issued before the
 * reload resume until the next rotation.
 */
export function sessionTicketOptions(
  lifetimeS: number,
): Pick<TlsOptions, 'sessionTimeout' | 'ticketKeys' | 'secureOptions'> {
  if (lifetimeS === 0) return { secureOptions: constants.SSL_OP_NO_TICKET };
  return { sessionTimeout: lifetimeS, ticketKeys: newTicketKeys() };
}

export interface TicketKeyRotation {
  /** Replaces the ticket key now: every ticket issued so far stops working. */
  rotate(): void;
  stop(): void;
}

/** Rotates the server's ticket key every `lifetimeS` seconds until stop() or the server closes. */
export function rotateTicketKeys(server: Server, lifetimeS: number): TicketKeyRotation {
  const rotate = (): void => server.setTicketKeys(newTicketKeys());
  if (lifetimeS === 0) return { rotate: () => {}, stop: () => {} };
  const timer = setInterval(rotate, lifetimeS * 1000);
  timer.unref();
  const stop = (): void => clearInterval(timer);
  server.once('close', stop);
  return { rotate, stop };
}

/** 48 bytes: OpenSSL's ticket name, HMAC key and AES key, as tls.Server.setTicketKeys() takes them. */
function newTicketKeys(): Buffer {
  return randomBytes(48);
}
