// Encoding of the agent identity certificate extension. The gateway accepts the extension value
// (the bytes inside the extension's OCTET STRING) only when it is exactly one DER UTF8String, so
// issuance must produce precisely that and nothing else.

/** The OID used everywhere by default (`policy.client_ext_oid`). */
export const DEFAULT_IDENTITY_EXTENSION_OID = '1.3.6.1.4.1.57264.1.1';

const UTF8_STRING_TAG = 0x0c;

// Identities end up in logs and in the signed permission bytes, which are newline-delimited:
// a newline or carriage return would let one identity forge another line; NUL truncates in C tools.
const FORBIDDEN = /[\n\r\0]/;
// With the `u` flag, a surrogate class only matches unpaired surrogates, which UTF-8 cannot encode
// (Buffer.from would silently replace them with U+FFFD and change the identity).
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/** DER length octets: short form below 128, otherwise the minimal long form. */
function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const octets: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest % 256);
  return Buffer.from([0x80 | octets.length, ...octets]);
}

/** The DER UTF8String TLV for `identity`, to be placed verbatim inside the extension's OCTET STRING. */
export function identityExtensionValue(identity: string): Buffer {
  if (identity.length === 0) {
    throw new Error('agent identity must not be empty; give a name such as "agent-alpha"');
  }
  if (FORBIDDEN.test(identity)) {
    throw new Error(
      `agent identity ${JSON.stringify(identity)} contains a newline, carriage return or NUL; remove it`,
    );
  }
  if (LONE_SURROGATE.test(identity)) {
    throw new Error(
      `agent identity ${JSON.stringify(identity)} is not valid Unicode (unpaired surrogate); fix the string`,
    );
  }
  const content = Buffer.from(identity, 'utf8');
  return Buffer.concat([Buffer.from([UTF8_STRING_TAG]), derLength(content.length), content]);
}
