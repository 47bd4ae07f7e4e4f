import { isUtf8 } from 'node:buffer';
import {
  checkBitString,
  checkBoolean,
  checkElement,
  checkInteger,
  checkOid,
  checkTime,
  DerError,
  decodeTlv,
  expectTlv,
  readTlv,
  TAG_BIT_STRING,
  TAG_BOOLEAN,
  TAG_GENERALIZED_TIME,
  TAG_INTEGER,
  TAG_OCTET_STRING,
  TAG_OID,
  TAG_SEQUENCE,
  TAG_SET,
  TAG_UTC_TIME,
  TAG_UTF8_STRING,
  Tlv,
} from './der.js';
import { isValidIdentity } from './identity-rule.js';

/**
 * Reads the two things the gateway needs from a client's leaf certificate: the exact
 * subjectPublicKeyInfo bytes (the key binding) and the identity extension.
 *
 * Hand-written on purpose: this runs once per TLS handshake. @peculiar/x509 takes ~600 µs per
 * certificate (halving the handshake rate) and re-encodes the SPKI, whose bytes can then differ from
 * what the client sent; node:crypto's X509Certificate cannot read arbitrary extensions. This reader
 * walks the DER in place in about a microsecond and slices the SPKI straight out of the input. It is
 * strict (canonical DER, exact X.509 shape, no trailing bytes) and fuzzed against asn1js/pkijs.
 */
export class CertificateError extends Error {
  override name = 'CertificateError';
}

export type IdentityProblem = 'missing' | 'malformed';

export interface ClientCertificate {
  /** exact subjectPublicKeyInfo TLV bytes as sent: a subarray of the input, never re-encoded */
  readonly spki: Buffer;
  /** the extension's UTF8String value, or null */
  readonly identity: string | null;
  /** why identity is null; null when identity is present */
  readonly identityProblem: IdentityProblem | null;
  /**
   * When the identity is malformed: the raw bytes of the (first) identity extension's value, as claimed by
   * the client, for the audit trail only (escaped and truncated before logging, never matched). A subarray
   * of the input; null otherwise.
   */
  readonly claimedIdentity: Buffer | null;
}

const TAG_VERSION = 0xa0; // [0] EXPLICIT
const TAG_ISSUER_UID = 0x81; // [1] IMPLICIT BIT STRING
const TAG_SUBJECT_UID = 0x82; // [2] IMPLICIT BIT STRING
const TAG_EXTENSIONS = 0xa3; // [3] EXPLICIT

/*
 * Scratch cursors, one per nesting level of the X.509 schema. The reader is synchronous and never
 * re-entered, so reusing them is safe and keeps the per-handshake allocation to the result object.
 */
const outer = new Tlv();
const level1 = new Tlv();
const level2 = new Tlv();
const level3 = new Tlv();
const level4 = new Tlv();
const level5 = new Tlv();
const level6 = new Tlv();
/** The identity extension's OCTET STRING, copied out while the extensions are walked. */
const identityExt = new Tlv();

/**
 * Throws CertificateError if the certificate structure is not strict DER or has trailing bytes after
 * the outer SEQUENCE. Identity problems are not errors: they are reported in `identityProblem`.
 */
export function readClientCertificate(der: Buffer, identityOidContent: Buffer): ClientCertificate {
  try {
    return read(der, identityOidContent);
  } catch (error) {
    if (error instanceof DerError) {
      throw new CertificateError(
        `client certificate is not a strict DER X.509 certificate: ${error.message}`,
      );
    }
    throw error;
  }
}

function read(der: Buffer, identityOid: Buffer): ClientCertificate {
  if (der.length === 0) throw new CertificateError('client certificate is empty: expected DER bytes');
  if (der[0] !== TAG_SEQUENCE) {
    throw new CertificateError(
      `client certificate does not start with a DER SEQUENCE (first byte 0x${der[0]!.toString(16)}): ` +
        'expected DER, not PEM or another encoding',
    );
  }
  readTlv(der, 0, der.length, outer);
  if (outer.end !== der.length) {
    throw new CertificateError(
      `client certificate has ${der.length - outer.end} bytes after its outer SEQUENCE: ` +
        'pass exactly one DER certificate (the leaf), not a chain or a padded buffer',
    );
  }
  const certEnd = outer.end;

  const tbs = level1;
  expectTlv(der, outer.contentStart, certEnd, TAG_SEQUENCE, 'tbsCertificate', tbs);
  const tbsEnd = tbs.end;
  let pos = tbs.contentStart;
  const f = level2;

  if (pos < tbsEnd && der[pos] === TAG_VERSION) {
    readTlv(der, pos, tbsEnd, f);
    expectTlv(der, f.contentStart, f.end, TAG_INTEGER, 'version', level3);
    checkInteger(der, level3, 'version');
    if (level3.end !== f.end) throw new DerError(`version at offset ${f.start} holds more than one INTEGER`);
    pos = f.end;
  }
  expectTlv(der, pos, tbsEnd, TAG_INTEGER, 'serialNumber', f);
  checkInteger(der, f, 'serialNumber');
  pos = algorithmIdentifier(der, f.end, tbsEnd);
  pos = name(der, pos, tbsEnd);
  pos = validity(der, pos, tbsEnd);
  pos = name(der, pos, tbsEnd);

  expectTlv(der, pos, tbsEnd, TAG_SEQUENCE, 'subjectPublicKeyInfo', f);
  const spkiStart = f.start;
  const spkiEnd = f.end;
  const keyAt = algorithmIdentifier(der, f.contentStart, spkiEnd);
  expectTlv(der, keyAt, spkiEnd, TAG_BIT_STRING, 'subjectPublicKey', level3);
  checkBitString(der, level3, 'subjectPublicKey');
  if (level3.end !== spkiEnd)
    throw new DerError(`subjectPublicKeyInfo at offset ${spkiStart} has extra content`);
  pos = spkiEnd;

  if (pos < tbsEnd && der[pos] === TAG_ISSUER_UID) {
    readTlv(der, pos, tbsEnd, f);
    checkBitString(der, f, 'issuerUniqueID');
    pos = f.end;
  }
  if (pos < tbsEnd && der[pos] === TAG_SUBJECT_UID) {
    readTlv(der, pos, tbsEnd, f);
    checkBitString(der, f, 'subjectUniqueID');
    pos = f.end;
  }
  let identity: string | null = null;
  let identityProblem: IdentityProblem | null = 'missing';
  let claimedIdentity: Buffer | null = null;
  if (pos < tbsEnd && der[pos] === TAG_EXTENSIONS) {
    readTlv(der, pos, tbsEnd, f);
    const found = extensions(der, f, identityOid);
    if (found !== ABSENT) {
      if (found === FOUND) identity = identityValue(der, identityExt.contentStart, identityExt.end);
      if (identity === null) {
        identityProblem = 'malformed';
        claimedIdentity = der.subarray(identityExt.contentStart, identityExt.end);
      } else {
        identityProblem = null;
      }
    }
    pos = f.end;
  }
  if (pos !== tbsEnd) {
    throw new DerError(
      `tbsCertificate has an unexpected element at offset ${pos} (tag 0x${der[pos]!.toString(16)})`,
    );
  }

  pos = algorithmIdentifier(der, tbsEnd, certEnd);
  expectTlv(der, pos, certEnd, TAG_BIT_STRING, 'signatureValue', level1);
  checkBitString(der, level1, 'signatureValue');
  if (level1.end !== certEnd) throw new DerError(`certificate has extra content at offset ${level1.end}`);

  return { spki: der.subarray(spkiStart, spkiEnd), identity, identityProblem, claimedIdentity };
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }; returns its end. */
function algorithmIdentifier(der: Buffer, pos: number, limit: number): number {
  const a = level3;
  const x = level4;
  expectTlv(der, pos, limit, TAG_SEQUENCE, 'AlgorithmIdentifier', a);
  expectTlv(der, a.contentStart, a.end, TAG_OID, 'algorithm', x);
  checkOid(der, x, 'algorithm');
  if (x.end < a.end) {
    readTlv(der, x.end, a.end, x);
    checkElement(der, x, 0);
    if (x.end !== a.end) throw new DerError(`AlgorithmIdentifier at offset ${a.start} has extra content`);
  }
  return a.end;
}

/** Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }; returns its end. */
function name(der: Buffer, pos: number, limit: number): number {
  const n = level3;
  const rdn = level4;
  const atv = level5;
  const x = level6;
  expectTlv(der, pos, limit, TAG_SEQUENCE, 'Name', n);
  for (let p = n.contentStart; p < n.end; p = rdn.end) {
    expectTlv(der, p, n.end, TAG_SET, 'RelativeDistinguishedName', rdn);
    for (let q = rdn.contentStart; q < rdn.end; q = atv.end) {
      expectTlv(der, q, rdn.end, TAG_SEQUENCE, 'AttributeTypeAndValue', atv);
      expectTlv(der, atv.contentStart, atv.end, TAG_OID, 'attribute type', x);
      checkOid(der, x, 'attribute type');
      readTlv(der, x.end, atv.end, x);
      checkElement(der, x, 0);
      if (x.end !== atv.end)
        throw new DerError(`AttributeTypeAndValue at offset ${atv.start} has extra content`);
    }
  }
  return n.end;
}

/** Validity ::= SEQUENCE { notBefore Time, notAfter Time }; dates are not judged here, only shape. */
function validity(der: Buffer, pos: number, limit: number): number {
  const v = level3;
  const t = level4;
  expectTlv(der, pos, limit, TAG_SEQUENCE, 'Validity', v);
  let p = v.contentStart;
  for (let i = 0; i < 2; i++) {
    readTlv(der, p, v.end, t);
    if (t.tag !== TAG_UTC_TIME && t.tag !== TAG_GENERALIZED_TIME) {
      throw new DerError(`validity time at offset ${t.start} is neither UTCTime nor GeneralizedTime`);
    }
    checkTime(der, t, 'validity time');
    p = t.end;
  }
  if (p !== v.end) throw new DerError(`Validity at offset ${v.start} has extra content`);
  return v.end;
}

const ABSENT = 0;
const FOUND = 1;
const DUPLICATE = 2;

/**
 * Walks `[3] EXPLICIT SEQUENCE OF Extension`, checking every Extension's shape. Returns FOUND (with
 * the extension's OCTET STRING copied into `identityExt`), ABSENT, or DUPLICATE when the OID occurs
 * more than once (RFC 5280 forbids it, and reading either copy would let the sender choose).
 */
function extensions(
  der: Buffer,
  wrapper: Tlv,
  identityOid: Buffer,
): typeof ABSENT | typeof FOUND | typeof DUPLICATE {
  const list = level3;
  const ext = level4;
  const x = level5;
  expectTlv(der, wrapper.contentStart, wrapper.end, TAG_SEQUENCE, 'extensions', list);
  if (list.end !== wrapper.end)
    throw new DerError(`extensions at offset ${wrapper.start} have extra content`);
  let found: typeof ABSENT | typeof FOUND | typeof DUPLICATE = ABSENT;
  for (let p = list.contentStart; p < list.end; p = ext.end) {
    expectTlv(der, p, list.end, TAG_SEQUENCE, 'Extension', ext);
    expectTlv(der, ext.contentStart, ext.end, TAG_OID, 'extnID', x);
    checkOid(der, x, 'extnID');
    const isIdentity =
      x.end - x.contentStart === identityOid.length && sameBytes(der, x.contentStart, identityOid);
    readTlv(der, x.end, ext.end, x);
    if (x.tag === TAG_BOOLEAN) {
      // Criticality is ignored, but it must still be a valid BOOLEAN for the structure to be DER.
      checkBoolean(der, x, 'critical');
      readTlv(der, x.end, ext.end, x);
    }
    if (x.tag !== TAG_OCTET_STRING) {
      throw new DerError(
        `extnValue at offset ${x.start}: expected an OCTET STRING, found tag 0x${x.tag.toString(16)}`,
      );
    }
    if (x.end !== ext.end) throw new DerError(`Extension at offset ${ext.start} has extra content`);
    if (isIdentity) {
      if (found === ABSENT) {
        found = FOUND;
        identityExt.contentStart = x.contentStart;
        identityExt.end = x.end;
      } else {
        found = DUPLICATE;
      }
    }
  }
  return found;
}

/**
 * The identity: exactly one valid UTF-8 DER UTF8String filling the extension value, whose text is a valid
 * identity by the one rule (identity-rule.ts: non-empty, no control character). Anything else is
 * malformed, which gives the investigator the true reason instead of a database error.
 */
function identityValue(der: Buffer, start: number, end: number): string | null {
  const s = level6;
  if (decodeTlv(der, start, end, s) !== null) return null;
  if (s.tag !== TAG_UTF8_STRING || s.end !== end) return null;
  if (!isAscii(der, s.contentStart, s.end) && !isUtf8(der.subarray(s.contentStart, s.end))) return null;
  const identity = der.toString('utf8', s.contentStart, s.end);
  return isValidIdentity(identity) ? identity : null;
}

/**
 * Byte comparison of `expected` with `der` at `at` (the caller has checked the length). A plain loop:
 * OIDs are ~10 bytes, and the native Buffer.compare call costs more than the comparison itself.
 */
function sameBytes(der: Buffer, at: number, expected: Buffer): boolean {
  for (let i = 0; i < expected.length; i++) if (der[at + i] !== expected[i]) return false;
  return true;
}

/** ASCII is valid UTF-8; checking it inline spares the common case a subarray and a native call. */
function isAscii(der: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (der[i]! >= 0x80) return false;
  return true;
}
