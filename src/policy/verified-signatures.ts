import { createHash } from 'node:crypto';
import { setBounded } from './bounded-insert.js';

/**
 * Remembers signatures that verified, so the same row does not cost an ECDSA verify on every CONNECT
 * (a P-256 verify is ~100 us, the largest single cost of a decision after the query).
 *
 * The entry is the SHA-256 of (signer SPKI, signature, signed bytes), each length-prefixed so no two
 * triples share an encoding. A hit therefore means: these exact bytes, under this exact key, with this
 * exact signature, verified before; ECDSA verification is deterministic, so verifying again would give
 * the same answer. The scheme already rests on SHA-256 collision resistance (ecdsa_p256_sha256), so
 * keying on the digest adds no assumption. Everything else about a row (revocation, time windows,
 * scope) is still judged from the fresh SELECT of every CONNECT; only the pure function is memoized.
 *
 * Only successes are kept: rows that fail cannot fill the cache, and stay denied by a real verify.
 * Bounded, oldest entry out first, because rows come from the database.
 */
export class VerifiedSignatureCache {
  readonly #entries = new Map<string, true>();
  constructor(readonly maxEntries: number) {}

  /** Runs `verify` unless this exact (key, signature, message) verified before; remembers a success. */
  check(signerSpki: Buffer, signature: Buffer, message: Buffer, verify: () => boolean): boolean {
    const id = digest(signerSpki, signature, message);
    if (this.#entries.has(id)) return true;
    if (!verify()) return false;
    setBounded(this.#entries, id, true, this.maxEntries);
    return true;
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }
}

const lengths = Buffer.alloc(12);

function digest(signerSpki: Buffer, signature: Buffer, message: Buffer): string {
  lengths.writeUInt32BE(signerSpki.length, 0);
  lengths.writeUInt32BE(signature.length, 4);
  lengths.writeUInt32BE(message.length, 8);
  return createHash('sha256')
    .update(lengths)
    .update(signerSpki)
    .update(signature)
    .update(message)
    .digest('base64');
}
