// Encoding of the agent identity certificate extension. The gateway accepts the extension value
// (the bytes inside the extension's OCTET STRING) only when it is exactly one DER UTF8String, so
// issuance must produce precisely that and nothing else.

/** The OID used everywhere by default (`policy.client_ext_oid`). */
export const DEFAULT_IDENTITY_EXTENSION_OID = '1.3.6.1.4.1.57264.1.1';

import { identityProblem } from '../identity/identity-rule.js';

const UTF8_STRING_TAG = 0x0c;

/** DER length octets: short form below 128, otherwise the minimal long form. */
function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const octets: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) octets.unshift(rest % 256);
  return Buffer.from([0x80 | octets.length, ...octets]);
}

/** The DER UTF8String TLV for `identity`, to be placed verbatim inside the extension's OCTET STRING. */
export function identityExtensionValue(identity: string): Buffer {
  // The gateway's reader applies the same rule: a certificate issued here is one it accepts.
  const problem = identityProblem(identity);
  if (problem !== undefined) throw new Error(problem);
  const content = Buffer.from(identity, 'utf8');
  return Buffer.concat([Buffer.from([UTF8_STRING_TAG]), derLength(content.length), content]);
}
