// ECDSA signature encodings. PKCS#11 (CKM_ECDSA) and WebCrypto produce IEEE P1363 `r || s`; the registry
// stores DER `SEQUENCE { INTEGER r, INTEGER s }` (what `openssl dgst -sign` writes and the gateway verifies).
// Hand-written because it is two minimal INTEGERs in a SEQUENCE and Node has no public converter; callers
// verify the result with node:crypto before it is used, so an encoding slip cannot go unnoticed.

const P256_SCALAR_BYTES = 32;

/** DER of a P-256 signature given as 64 bytes `r || s`. */
export function p1363ToDer(signature: Uint8Array): Buffer {
  if (signature.length !== 2 * P256_SCALAR_BYTES) {
    throw new Error(
      `an ECDSA P-256 signature in P1363 form is ${2 * P256_SCALAR_BYTES} bytes, got ${signature.length}`,
    );
  }
  const r = derInteger(signature.subarray(0, P256_SCALAR_BYTES));
  const s = derInteger(signature.subarray(P256_SCALAR_BYTES));
  // At most 2 × (2 + 33) = 70 content bytes: the short length form always fits.
  return Buffer.concat([Buffer.from([0x30, r.length + s.length]), r, s]);
}

/** A non-negative big-endian integer as a minimal DER INTEGER (leading zeros dropped, 0x00 before a high bit). */
function derInteger(unsigned: Uint8Array): Buffer {
  let start = 0;
  while (start < unsigned.length - 1 && unsigned[start] === 0) start++;
  const magnitude = Buffer.from(unsigned.subarray(start));
  const body = (magnitude[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), magnitude]) : magnitude;
  return Buffer.concat([Buffer.from([0x02, body.length]), body]);
}
