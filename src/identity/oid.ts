/**
 * Turns the configured identity OID (`policy.client_ext_oid`) into the DER content bytes the
 * certificate reader compares against. Done once at config load so the hot path compares raw bytes
 * instead of decoding every extension OID into a string.
 */
export class OidError extends Error {
  override name = 'OidError';
}

const DOTTED = /^[0-9]+(\.[0-9]+)+$/;

/** DER content bytes (no tag/length) of a dotted OID such as "1.3.6.1.4.1.57264.1.1". */
export function encodeOidContent(dotted: string): Buffer {
  if (!DOTTED.test(dotted)) {
    throw new OidError(
      `OID ${JSON.stringify(dotted)} is not in dotted form: expected at least two decimal arcs ` +
        'separated by dots, such as 1.3.6.1.4.1.57264.1.1',
    );
  }
  const parts = dotted.split('.');
  for (const part of parts) {
    // "1.03" and "1.3" would otherwise name the same OID; insist on the canonical spelling.
    if (part.length > 1 && part.startsWith('0')) {
      throw new OidError(`OID ${dotted}: arc "${part}" has a leading zero; write it without one`);
    }
  }
  // BigInt because arcs may exceed 2^53 (UUID-based OIDs under 2.25 carry 128-bit arcs).
  const arcs = parts.map((part) => BigInt(part));
  const first = arcs[0]!;
  const second = arcs[1]!;
  if (first > 2n) throw new OidError(`OID ${dotted}: the first arc must be 0, 1 or 2, not ${first}`);
  if (first < 2n && second > 39n) {
    throw new OidError(`OID ${dotted}: under arc ${first} the second arc must be at most 39, not ${second}`);
  }
  // X.690 8.19: the first two arcs share one subidentifier, the rest are base-128 with continuation bits.
  const bytes: number[] = [];
  pushBase128(bytes, first * 40n + second);
  for (let i = 2; i < arcs.length; i++) pushBase128(bytes, arcs[i]!);
  return Buffer.from(bytes);
}

function pushBase128(out: number[], value: bigint): void {
  const groups: number[] = [Number(value & 0x7fn)];
  for (let rest = value >> 7n; rest > 0n; rest >>= 7n) groups.push(Number(rest & 0x7fn) | 0x80);
  for (let i = groups.length - 1; i >= 0; i--) out.push(groups[i]!);
}
