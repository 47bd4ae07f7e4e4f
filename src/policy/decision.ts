import type { DenyReason } from '../observability/events.js';

export type { DenyReason };

/** The policy's answer for one CONNECT. A deny carries the reason for the log, never for the client. */
export type PolicyDecision =
  | {
      allowed: true;
      permissionId: string;
      signingKeyId: string;
      /** Answered from the opt-in decision cache (policy.decision_cache_ms), not a registry query. */
      cached?: true;
    }
  | { allowed: false; reason: DenyReason; detail?: string };

export interface PolicyEngine {
  /**
   * Decides one CONNECT for the client identified by `identity` holding the key `spki` (exact
   * SubjectPublicKeyInfo DER) to `destination` (normalized authority). Never throws: every failure,
   * including database errors and timeouts, is a deny.
   */
  decide(identity: string, spki: Buffer, destination: string): Promise<PolicyDecision>;
  /**
   * Stops answering (later calls deny), forgets every cached answer, and closes the registry pool the
   * engine was given, waiting at most `timeoutS` (default 5) seconds for queries in flight.
   */
  close(timeoutS?: number): Promise<void>;
}
