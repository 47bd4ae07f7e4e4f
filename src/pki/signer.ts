// The one shape of an ECDSA P-256 / SHA-256 signing key, wherever the key lives: in this process (a key
// file's KeyObject) or inside a PKCS#11 token (src/pkcs11). Certificate issuance and permission signing take
// a P256Signer, so a token key signs exactly the bytes a file key would.
import { type KeyObject, sign } from 'node:crypto';
import { assertP256, spkiDerOf } from './keys.js';

export interface P256Signer {
  /** The public key as SubjectPublicKeyInfo DER. */
  readonly spkiDer: Buffer;
  /**
   * ECDSA over SHA-256(data) as IEEE P1363 `r || s` (64 bytes): the form WebCrypto (certificate issuance)
   * and PKCS#11 CKM_ECDSA use. `ecdsa-signature.ts` turns it into the DER the registry stores.
   */
  signP1363(data: Uint8Array): Promise<Buffer>;
}

/** A signer over a P-256 private key held in this process. */
export function keyObjectSigner(key: KeyObject, what: string): P256Signer {
  assertP256(key, what);
  const spkiDer = spkiDerOf(key);
  return {
    spkiDer,
    signP1363: async (data) => sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }),
  };
}
