import { createPublicKey, type KeyObject } from 'node:crypto';

/** The one signing algorithm the registry contract knows (principal_signing_keys.algorithm). */
export const SIGNING_ALGORITHM = 'ecdsa_p256_sha256';

/**
 * The one rule for a key that signs permissions (or that the registry is asked to hold): ECDSA on P-256.
 * Undefined when `key` is one, else a predicate for the key's name ("… must be an ECDSA P-256 key, but
 * it is EC on secp384r1"). The gateway, the registry writer and the key
 * tools all ask here.
 */
export function p256Problem(key: KeyObject): string | undefined {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType === 'ec' && curve === 'prime256v1') return undefined;
  const actual =
    key.asymmetricKeyType === 'ec' ? `EC on ${String(curve)}` : String(key.asymmetricKeyType ?? key.type);
  return `must be an ECDSA P-256 key (prime256v1, for ${SIGNING_ALGORITHM}), but it is ${actual}`;
}

/** A DER SubjectPublicKeyInfo parsed as a P-256 public key, or why it is not one. */
export function parseP256Spki(spki: Buffer): KeyObject | { readonly problem: string } {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    return { problem: `is not a DER SubjectPublicKeyInfo (${(err as Error).message})` };
  }
  const problem = p256Problem(key);
  return problem === undefined ? key : { problem };
}
