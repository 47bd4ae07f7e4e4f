import type { DenyReason } from '../observability/events.js';
import type { TunnelGrant } from '../session/tunnel-session.js';

export type { DenyReason };

/**
 * An allow: the rows that granted it and how long they stay valid, which is exactly what a tunnel opened
 * on it carries as its grant (session/tunnel-session.ts).
 */
export interface PolicyAllow extends TunnelGrant {
  readonly allowed: true;
}

/** The policy's answer for one CONNECT. A deny carries the reason for the log, never for the client. */
export type PolicyDecision = PolicyAllow | { allowed: false; reason: DenyReason; detail?: string };

/** One open tunnel's authority, to be judged again (the live check). */
export interface RecheckSubject {
  readonly permissionId: string;
  readonly identity: string;
  readonly spki: Buffer;
  readonly destination: string;
}

/** The verdict of a re-check for one subject. */
export type RecheckVerdict =
  | { readonly ok: true; readonly validUntilMono: number; readonly endsWith: 'permission' | 'signer' }
  | { readonly ok: false; readonly reason: DenyReason; readonly detail: string };

export type RecheckResult =
  | { readonly ok: true; readonly verdicts: readonly RecheckVerdict[] }
  | { readonly ok: false; readonly error: string };

export interface PolicyEngine {
  /**
   * Decides one CONNECT for the client identified by `identity` holding the key `spki` (exact
   * SubjectPublicKeyInfo DER) to `destination` (normalized authority). Never throws: every failure,
   * including database errors and timeouts, is a deny.
   */
  decide(identity: string, spki: Buffer, destination: string): Promise<PolicyDecision>;
  /**
   * Judges open tunnels again with one query for all their permissions: the same checks as decide(),
   * on the rows as they are now (revoked, deleted or edited rows included). Verdicts are in the order of
   * `subjects`. A failed query is `{ ok: false }`: the caller decides how long tunnels may outlive it.
   */
  recheck(subjects: readonly RecheckSubject[]): Promise<RecheckResult>;
  /** The decision cache is used only while this says so (the live check is healthy). */
  setCacheGate(usable: () => boolean): void;
  /** Forgets every cached allow (a registry change was announced, or the live check restarted). */
  invalidateCache(): void;
  /** Forgets the cached allows these permissions back (a re-check found them no longer valid). */
  forgetPermissions(permissionIds: Iterable<string>): void;
  /**
   * Stops answering (later calls deny), forgets every cached answer, and closes the registry pool the
   * engine was given, waiting at most `timeoutS` (default 5) seconds for queries in flight.
   */
  close(timeoutS?: number): Promise<void>;
}
