import { setBounded } from './bounded-insert.js';

/** A decision that allowed, as the cache hands it back. */
export interface CachedAllow {
  readonly permissionId: string;
  readonly signingKeyId: string;
}

interface Entry extends CachedAllow {
  readonly expiresAt: number;
}

/**
 * Opt-in (`policy.decision_cache_ms`, default 0 = off): remembers allows for a bounded time so that an
 * agent opening many tunnels to the same destination does not cost a registry round trip each.
 *
 * The trade is explicit: with the cache on, a revocation (of the permission, its signer or the scope)
 * takes effect within `decision_cache_ms` instead of on the very next CONNECT. What does not change:
 * - only allows are remembered; every deny is decided afresh (a client cannot make the gateway remember
 *   anything by being refused, and a newly granted permission is seen at once);
 * - the key is the exact identity, the exact client public key (SPKI bytes) and the normalized
 *   destination, so a certificate with another key, or another port, is a miss;
 * - an entry never outlives the rows it came from: it expires at the earlier of `decision_cache_ms` and
 *   the permission's or signer's `not_after`, both counted from the moment the query was *sent* (a slow
 *   answer that started before a revocation cannot stretch the bound by its own latency);
 * - a fresh deny for the same key removes any entry (a slow allow cannot outlive a later refusal).
 * The clock is injected (monotonic by default) so tests need no sleeping.
 */
export class DecisionCache {
  readonly #entries = new Map<string, Entry>();

  constructor(
    readonly maxAgeMs: number,
    readonly maxEntries: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * The entry key for one request, built once per CONNECT and passed to get/put/forget. NUL cannot occur
   * in an identity (refused before) nor in a normalized destination, so the join is unambiguous.
   */
  keyOf(identity: string, spki: Buffer, destination: string): string {
    return `${identity}\0${destination}\0${spki.toString('base64')}`;
  }

  get(key: string): CachedAllow | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.now() >= entry.expiresAt) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** This cache's clock; read before a query is sent, to pass to put(). */
  clock(): number {
    return this.now();
  }

  /**
   * `validForMs`: how long the allowing rows stay valid, from the database (NaN or <= 0: not cached);
   * `queriedAt`: clock() when the query was sent, from which both bounds are counted.
   */
  put(key: string, allow: CachedAllow, validForMs: number, queriedAt: number): void {
    const expiresAt = queriedAt + Math.min(this.maxAgeMs, validForMs);
    if (!(expiresAt > this.now())) return;
    const entry = { permissionId: allow.permissionId, signingKeyId: allow.signingKeyId, expiresAt };
    setBounded(this.#entries, key, entry, this.maxEntries);
  }

  forget(key: string): void {
    this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }
}
