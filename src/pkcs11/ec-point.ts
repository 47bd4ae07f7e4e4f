// A token's EC public key (CKA_EC_PARAMS + CKA_EC_POINT) as the SubjectPublicKeyInfo DER that
// certificates and the registry hold. Only P-256 is accepted: the registry knows only ecdsa_p256_sha256.
import { createPublicKey } from 'node:crypto';

/** CKA_EC_PARAMS of P-256: the DER OBJECT IDENTIFIER 1.2.840.10045.3.1.7 (prime256v1). */
export const P256_EC_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');

// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) }, before the 65-byte point.
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');
const UNCOMPRESSED_POINT_BYTES = 65;

/**
 * The SPKI of a P-256 public key object, or undefined when it is not one (another curve, a compressed or
 * malformed point). PKCS#11 says CKA_EC_POINT is a DER OCTET STRING; some modules return the bare point,
 * and both are accepted. The point is checked to lie on the curve by node:crypto.
 */
export function p256SpkiFromEcPoint(ecParams: Buffer, ecPoint: Buffer): Buffer | undefined {
  if (!ecParams.equals(P256_EC_PARAMS)) return undefined;
  const point =
    ecPoint.length === UNCOMPRESSED_POINT_BYTES + 2 &&
    ecPoint[0] === 0x04 &&
    ecPoint[1] === UNCOMPRESSED_POINT_BYTES
      ? ecPoint.subarray(2)
      : ecPoint;
  if (point.length !== UNCOMPRESSED_POINT_BYTES || point[0] !== 0x04) return undefined;
  const spki = Buffer.concat([P256_SPKI_PREFIX, point]);
  try {
    createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    return undefined;
  }
  return spki;
}

/** `spki` when it is a P-256 SubjectPublicKeyInfo (CKA_PUBLIC_KEY_INFO), re-exported canonically; else undefined. */
export function p256Spki(spki: Buffer): Buffer | undefined {
  try {
    const key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
      return undefined;
    return key.export({ type: 'spki', format: 'der' });
  } catch {
    return undefined;
  }
}
