/**
 * A tiny strict DER reader for the handshake hot path. It never builds a tree: callers walk the bytes
 * with a reusable `Tlv` cursor that `readTlv` fills in place, so reading a certificate allocates next to
 * nothing. Everything that is not canonical DER (indefinite or non-minimal lengths, multi-byte tags,
 * constructed strings, non-minimal integers, ...) is rejected, because two parsers that disagree on a
 * lenient encoding can be made to read different identities or keys out of the same bytes.
 */
export class DerError extends Error {
  override name = 'DerError';
}

/** The header of one DER element. Offsets are absolute positions in the buffer being read. */
export class Tlv {
  /** The identifier octet (class, constructed bit and tag number in one byte). */
  tag = 0;
  /** Offset of the identifier octet. */
  start = 0;
  /** Offset of the first content byte. */
  contentStart = 0;
  /** Offset just past the last content byte. */
  end = 0;
}

export const TAG_BOOLEAN = 0x01;
export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_NULL = 0x05;
export const TAG_OID = 0x06;
export const TAG_ENUMERATED = 0x0a;
export const TAG_UTF8_STRING = 0x0c;
export const TAG_UTC_TIME = 0x17;
export const TAG_GENERALIZED_TIME = 0x18;
export const TAG_UNIVERSAL_STRING = 0x1c;
export const TAG_BMP_STRING = 0x1e;
export const TAG_SEQUENCE = 0x30;
export const TAG_SET = 0x31;

const CONSTRUCTED = 0x20;
const CLASS_MASK = 0xc0;
/**
 * Nesting allowed below a field whose content we validate generically (names, algorithm parameters).
 * Real certificates nest a handful of levels (RSA-PSS parameters are the deepest at about five); the
 * cap keeps a hostile certificate from driving recursion towards a stack overflow.
 */
const MAX_NESTING = 32;

/**
 * Reads the header of the element at `pos`, which must end by `limit` (the end of its parent).
 * Returns null on success or a description of the problem, so callers that only need a yes/no
 * (such as the identity extension check) do not pay for an exception.
 */
export function decodeTlv(der: Uint8Array, pos: number, limit: number, out: Tlv): string | null {
  if (pos >= limit) return `expected an element at offset ${pos}, but its enclosing element ends there`;
  const tag = der[pos]!;
  if ((tag & 0x1f) === 0x1f) {
    return `multi-byte tag at offset ${pos} (0x${hex(tag)}): certificates never need one`;
  }
  if (pos + 1 >= limit) return `element at offset ${pos} is cut off before its length`;
  const first = der[pos + 1]!;
  let contentStart = pos + 2;
  let length = first;
  if (first >= 0x80) {
    const count = first & 0x7f;
    if (count === 0) return `element at offset ${pos} uses an indefinite length, which DER forbids`;
    // Four length bytes already describe 4 GiB; more can only be padding or an attack.
    if (count > 4) return `element at offset ${pos} has a ${count}-byte length field`;
    if (contentStart + count > limit) return `element at offset ${pos} is cut off inside its length`;
    if (der[contentStart] === 0) return `element at offset ${pos} pads its length with a leading zero byte`;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + der[contentStart + i]!;
    if (length < 0x80) return `element at offset ${pos} uses the long length form for ${length} bytes`;
    contentStart += count;
  }
  const end = contentStart + length;
  if (end > limit) {
    return `element at offset ${pos} claims ${length} content bytes but only ${limit - contentStart} remain`;
  }
  out.tag = tag;
  out.start = pos;
  out.contentStart = contentStart;
  out.end = end;
  return null;
}

/** `decodeTlv` that throws a DerError naming the problem. */
export function readTlv(der: Uint8Array, pos: number, limit: number, out: Tlv): void {
  const problem = decodeTlv(der, pos, limit, out);
  if (problem !== null) throw new DerError(problem);
}

/** Reads the element at `pos` and checks its identifier octet; `what` names the field for the error. */
export function expectTlv(
  der: Uint8Array,
  pos: number,
  limit: number,
  tag: number,
  what: string,
  out: Tlv,
): void {
  const problem = decodeTlv(der, pos, limit, out);
  if (problem !== null) throw new DerError(`${what}: ${problem}`);
  if (out.tag !== tag) {
    throw new DerError(`${what} at offset ${pos}: expected tag 0x${hex(tag)}, found 0x${hex(out.tag)}`);
  }
}

/** INTEGER/ENUMERATED content: non-empty two's complement without redundant leading bytes. */
export function checkInteger(der: Uint8Array, t: Tlv, what: string): void {
  const n = t.end - t.contentStart;
  if (n === 0) throw new DerError(`${what} at offset ${t.start} is an empty INTEGER`);
  if (n > 1) {
    const a = der[t.contentStart]!;
    const b = der[t.contentStart + 1]!;
    if ((a === 0x00 && b < 0x80) || (a === 0xff && b >= 0x80)) {
      throw new DerError(`${what} at offset ${t.start} is an INTEGER with a redundant leading byte`);
    }
  }
}

/** OBJECT IDENTIFIER content: non-empty, minimal base-128 arcs, the last one complete. */
export function checkOid(der: Uint8Array, t: Tlv, what: string): void {
  if (t.end === t.contentStart) throw new DerError(`${what} at offset ${t.start} is an empty OID`);
  let arcStart = true;
  for (let i = t.contentStart; i < t.end; i++) {
    const b = der[i]!;
    if (arcStart && b === 0x80) {
      throw new DerError(`${what} at offset ${t.start} is an OID with a zero-padded arc`);
    }
    arcStart = b < 0x80;
  }
  if (!arcStart) throw new DerError(`${what} at offset ${t.start} is an OID whose last arc is cut off`);
}

/** BIT STRING content: an unused-bit count 0..7 followed by the bits, padding bits zero (DER). */
export function checkBitString(der: Uint8Array, t: Tlv, what: string): void {
  const n = t.end - t.contentStart;
  if (n === 0)
    throw new DerError(`${what} at offset ${t.start} is a BIT STRING without its unused-bits byte`);
  const unused = der[t.contentStart]!;
  if (unused > 7) throw new DerError(`${what} at offset ${t.start} claims ${unused} unused bits (max 7)`);
  if (unused !== 0) {
    if (n === 1) throw new DerError(`${what} at offset ${t.start} is an empty BIT STRING with unused bits`);
    if ((der[t.end - 1]! & ((1 << unused) - 1)) !== 0) {
      throw new DerError(`${what} at offset ${t.start} is a BIT STRING with non-zero padding bits`);
    }
  }
}

/** BOOLEAN content: one byte, 0x00 or 0xFF. */
export function checkBoolean(der: Uint8Array, t: Tlv, what: string): void {
  const v = der[t.contentStart];
  if (t.end - t.contentStart !== 1 || (v !== 0x00 && v !== 0xff)) {
    throw new DerError(`${what} at offset ${t.start} is not a DER BOOLEAN (one byte, 00 or FF)`);
  }
}

/**
 * UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSSZ`: the only forms RFC 5280 allows in
 * certificates (no fractions, no offsets), with plausible field ranges.
 */
export function checkTime(der: Uint8Array, t: Tlv, what: string): void {
  if (!isCertificateTime(der, t)) {
    const form = t.tag === TAG_UTC_TIME ? 'YYMMDDHHMMSSZ' : 'YYYYMMDDHHMMSSZ';
    throw new DerError(`${what} at offset ${t.start} is not a ${form} time`);
  }
}

function isCertificateTime(der: Uint8Array, t: Tlv): boolean {
  const yearDigits = t.tag === TAG_UTC_TIME ? 2 : 4;
  if (t.end - t.contentStart !== yearDigits + 11 || der[t.end - 1] !== 0x5a /* Z */) return false;
  for (let i = t.contentStart; i < t.end - 1; i++) {
    const d = der[i]!;
    if (d < 0x30 || d > 0x39) return false;
  }
  const p = t.contentStart + yearDigits;
  const month = twoDigits(der, p);
  const day = twoDigits(der, p + 2);
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= 31 &&
    twoDigits(der, p + 4) <= 23 &&
    twoDigits(der, p + 6) <= 59 &&
    twoDigits(der, p + 8) <= 59
  );
}

/**
 * Validates one element of a field the certificate schema leaves open (attribute values in names,
 * algorithm parameters): constructed elements are walked recursively, universal primitives get their
 * DER content rules, and universal types that have no business in a certificate are refused.
 */
export function checkElement(der: Uint8Array, t: Tlv, depth: number): void {
  const tag = t.tag;
  if ((tag & CLASS_MASK) !== 0) {
    // Context-specific, application or private: opaque when primitive, nested elements otherwise.
    if ((tag & CONSTRUCTED) !== 0) checkChildren(der, t.contentStart, t.end, depth + 1);
    return;
  }
  switch (tag) {
    case TAG_SEQUENCE:
    case TAG_SET:
      checkChildren(der, t.contentStart, t.end, depth + 1);
      return;
    case TAG_BOOLEAN:
      checkBoolean(der, t, 'BOOLEAN');
      return;
    case TAG_INTEGER:
    case TAG_ENUMERATED:
      checkInteger(der, t, 'INTEGER');
      return;
    case TAG_BIT_STRING:
      checkBitString(der, t, 'BIT STRING');
      return;
    case TAG_NULL:
      if (t.end !== t.contentStart) throw new DerError(`NULL at offset ${t.start} has content`);
      return;
    case TAG_OID:
      checkOid(der, t, 'OID');
      return;
    case TAG_UTC_TIME:
    case TAG_GENERALIZED_TIME:
      checkTime(der, t, 'time');
      return;
    case TAG_BMP_STRING:
      if ((t.end - t.contentStart) % 2 !== 0) {
        throw new DerError(`BMPString at offset ${t.start} has an odd length`);
      }
      return;
    case TAG_UNIVERSAL_STRING:
      if ((t.end - t.contentStart) % 4 !== 0) {
        throw new DerError(`UniversalString at offset ${t.start} is not a whole number of 4-byte characters`);
      }
      return;
    case TAG_OCTET_STRING:
    case TAG_UTF8_STRING:
    case 0x12: // NumericString
    case 0x13: // PrintableString
    case 0x14: // TeletexString
    case 0x15: // VideotexString
    case 0x16: // IA5String
    case 0x19: // GraphicString
    case 0x1a: // VisibleString
    case 0x1b: // GeneralString
      return;
    default:
      throw new DerError(
        `element at offset ${t.start} has tag 0x${hex(tag)}, which is not a DER type used in certificates ` +
          '(constructed strings, end-of-contents and exotic universal types are refused)',
      );
  }
}

/** Checks that `[pos, end)` is a sequence of valid elements that exactly fills the range. */
export function checkChildren(der: Uint8Array, pos: number, end: number, depth: number): void {
  if (depth > MAX_NESTING)
    throw new DerError(`elements nest deeper than ${MAX_NESTING} levels at offset ${pos}`);
  const t = new Tlv();
  while (pos < end) {
    readTlv(der, pos, end, t);
    checkElement(der, t, depth);
    pos = t.end;
  }
}

function twoDigits(der: Uint8Array, at: number): number {
  return (der[at]! - 0x30) * 10 + (der[at + 1]! - 0x30);
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, '0');
}
