import { setBounded } from './bounded-insert.js';
import type { PolicyAllow } from './decision.js';

interface Entry {
  readonly allow: PolicyAllow;
  readonly expiresAt: number;
}

/**
 * Remembers allows for a bounded time so that an agent opening many tunnels to the same destination does
 * not cost a registry round trip each. Safe because of what invalidates it, not because of its TTL:
 * - it is consulted only while the live check is healthy (the registry's change notifications arrive and
 *   the periodic re-check succeeds); otherwise every CONNECT queries;
 * - any change announced by the registry clears it, and a re-check that finds a permission no longer valid
 *   removes the allows that permission backs, so a revocation acts on new CONNECTs within the same bound
 *   as on open tunnels. A tunnel opened from a stale entry is an open tunnel like any other: the next
 *   periodic re-check closes it;
 * - only allows are remembered; every deny is decided afresh (a client cannot make the gateway remember
 *   anything by being refused), and a fresh deny for the same key removes any entry;
 * - the key is the exact identity, the exact client public key (SPKI bytes) and the normalized
 *   destination, so a certificate with another key, or another port, is a miss;
 * - an entry never outlives its rows' windows (the allow's validUntilMono), and an answer to a query sent
 *   before the last invalidation is not stored (`generation`): a slow allow cannot outlive a revocation.
 * The clock is injected (monotonic by default) so tests need no sleeping.
 */
export class DecisionCache {
  readonly #entries = new Map<string, Entry>();
  /** Bumped by every invalidation; put() ignores answers to queries sent under an older one. */
  generation = 0;

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

  get(key: string): PolicyAllow | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (this.now() >= entry.expiresAt) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.allow;
  }

  /**
   * Stores `allow`, answered to a query sent at `queriedAt` (this cache's clock) under `generation`; kept
   * until the earlier of `queriedAt + maxAgeMs` and the allow's own validity.
   */
  put(key: string, allow: PolicyAllow, queriedAt: number, generation: number): void {
    if (generation !== this.generation) return;
    const expiresAt = Math.min(queriedAt + this.maxAgeMs, allow.validUntilMono);
    if (!(expiresAt > this.now())) return;
    setBounded(this.#entries, key, { allow, expiresAt }, this.maxEntries);
  }

  forget(key: string): void {
    this.#entries.delete(key);
  }

  /** Removes every entry backed by one of these permissions. */
  forgetPermissions(permissionIds: ReadonlySet<string>): void {
    if (permissionIds.size === 0) return;
    this.generation++;
    for (const [key, entry] of this.#entries) {
      if (permissionIds.has(entry.allow.permissionId)) this.#entries.delete(key);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  clock(): number {
    return this.now();
  }

  clear(): void {
    this.generation++;
    this.#entries.clear();
  }
}
