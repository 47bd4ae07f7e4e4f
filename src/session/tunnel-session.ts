import type { Destination } from '../destination/normalize.js';
import type { TraceContext } from '../tracecontext/traceparent.js';

export type TunnelProtocol = 'HTTP/1.1' | 'HTTP/2';

/**
 * What the policy granted a tunnel, and for how long. Built once from the engine's allow; the live check
 * may later replace `validUntil` with what a re-check of the same rows says (a signer's window edited).
 */
export interface TunnelGrant {
  readonly permissionId: string;
  readonly signingKeyId: string;
  /** The delegation (principal_key_permissions.id) whose window covers the permission's; text (BIGSERIAL). */
  readonly scopeId: string;
  /**
   * Monotonic milliseconds (the gateway clock) at which the earliest of the permission's and the signer's
   * `not_after` passes. A covering scope never ends earlier than its permission, so it adds no term. Taken
   * from the database clock as "valid for N ms" counted from when the query was sent, so it errs early.
   */
  readonly validUntilMono: number;
  /** Which window ends first, for the close reason when it does. */
  readonly endsWith: 'permission' | 'signer';
  /** The allow was reused from the decision cache rather than a registry query. */
  readonly cached: boolean;
}

/**
 * One tunnel's identity card, built once in the CONNECT flow and never mutated: who (identity and the
 * exact key), to where, over what, on whose authority and until when. Every event about the tunnel
 * carries it; the set of open tunnels indexes it; the live check judges it again.
 */
export interface TunnelSession {
  /** Unique within this gateway process (`<process tag>-<counter>`), for the admin API and logs. */
  readonly id: string;
  readonly identity: string;
  /** The client's subjectPublicKeyInfo exactly as sent. */
  readonly spki: Buffer;
  /** SHA-256 of `spki`, lower-case hex: how operators name a key (`agent create` prints it). */
  readonly spkiFingerprint: string;
  readonly destination: Destination;
  /** The vetted address that was dialled. */
  readonly destAddr: string;
  readonly protocol: TunnelProtocol;
  /** `ip:port` of the TLS client. */
  readonly peerAddr: string;
  readonly trace: TraceContext | undefined;
  readonly grant: TunnelGrant;
  /** Wall-clock milliseconds since the epoch when the 200 was sent, for display. */
  readonly openedAt: number;
  /** Monotonic milliseconds when the 200 was sent (durations, lifetimes). */
  readonly openedAtMono: number;
}

let counter = 0;
/** Distinguishes this process's tunnel ids from another gateway's (or a restarted one's) in merged logs. */
const PROCESS_TAG = `${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;

/** A new tunnel id: cheap (no randomness on the CONNECT path) and unique within the process. */
export function nextTunnelId(): string {
  counter++;
  return `${PROCESS_TAG}-${counter}`;
}
