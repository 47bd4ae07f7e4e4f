import { type KeyObject, verify } from 'node:crypto';
import { canonicalPermissionBytes, canonicalTimestampSql } from '../registry/canonical.js';
import {
  permissionColumns,
  scopeCoversSql,
  scopeForSql,
  scopeInForceSql,
  scopeUnrevokedSql,
} from '../registry/scope-coverage.js';
import { parseP256Spki, SIGNING_ALGORITHM } from '../registry/signing-key.js';
import { setBounded } from './bounded-insert.js';
import type { DenyReason } from './decision.js';
import type { VerifiedSignatureCache } from './verified-signatures.js';

/**
 * The per-row half of the policy: which columns a permission row is judged on, and the judgement itself.
 * The gateway's engine runs it on the candidates of one CONNECT; the operator tools (`permission list`,
 * `registry verify`) run it on every row. One implementation, so the tools can never say "active" about a
 * row the gateway would deny.
 *
 * Time is the database's: every "is it valid now" is a boolean computed against PostgreSQL's now() in the
 * same statement. Rows are attacker-influenced (whoever can write the registry, or tamper with it): every
 * column is type-checked, NULL fails closed, and large values are cut in SQL before they cross the wire.
 */

export { SIGNING_ALGORITHM };
/** Text fields longer than this cannot be legitimate; SQL returns one character more so we can tell. */
export const MAX_TEXT = 4096;
/** A P-256 SPKI is 91 bytes (59 compressed), a DER signature at most 72; generous caps for both. */
export const MAX_SPKI_BYTES = 1024;
const MAX_SIGNATURE_BYTES = 1024;

const renderable = (col: string) =>
  `(${col} >= '0001-01-01T00:00:00Z'::timestamptz AND ${col} < '10000-01-01T00:00:00Z'::timestamptz)`;

/** The SELECT list every judged row needs (`p` = permission_registry, `k` = its signing key). */
export const PERMISSION_ROW_COLUMNS = `
  left(p.permission_id, ${MAX_TEXT + 1}) AS permission_id,
  left(p.signing_key_id, ${MAX_TEXT + 1}) AS signing_key_id,
  left(p.subject_identity, ${MAX_TEXT + 1}) AS subject_identity,
  left(p.destination, ${MAX_TEXT + 1}) AS destination,
  ${canonicalTimestampSql('p.not_before')} AS not_before,
  ${canonicalTimestampSql('p.not_after')} AS not_after,
  (${renderable('p.not_before')} AND ${renderable('p.not_after')}) AS window_renderable,
  (p.revoked_at IS NULL) AS unrevoked,
  (p.not_before <= now()) AS started,
  (now() < p.not_after) AS unexpired,
  CASE WHEN octet_length(p.signature) <= ${MAX_SIGNATURE_BYTES} THEN p.signature END AS signature,
  octet_length(p.signature) AS signature_length,
  (k.key_id IS NOT NULL) AS signer_found,
  left(k.algorithm, 64) AS signer_algorithm,
  CASE WHEN octet_length(k.public_key_spki_der) <= ${MAX_SPKI_BYTES} THEN k.public_key_spki_der END AS signer_spki,
  (k.revoked_at IS NULL) AS signer_unrevoked,
  (k.not_before <= now()) AS signer_started,
  (now() < k.not_after) AS signer_unexpired,
  EXISTS (
    SELECT 1 FROM principal_key_permissions s
    WHERE ${scopeForSql('s', permissionColumns('p'))} AND ${scopeUnrevokedSql('s')}
  ) AS scope_present,
  cover.id::text AS scope_id,
  (cover.id IS NOT NULL) AS scope_covers,
  CASE WHEN octet_length(p.subject_public_key_spki_der) <= ${MAX_SPKI_BYTES}
    THEN p.subject_public_key_spki_der END AS subject_spki,
  -- How long this row and its signer stay valid, on the database clock (a covering scope ends no earlier
  -- than its permission, so it adds no term): bounds a cached allow and arms an open tunnel's deadline.
  (extract(epoch FROM (least(p.not_after, k.not_after) - now())) * 1000)::float8 AS valid_for_ms,
  (k.not_after < p.not_after) AS signer_ends_first`;

/** The FROM clause matching {@link PERMISSION_ROW_COLUMNS}. */
export const PERMISSION_ROW_FROM = `
FROM permission_registry p
LEFT JOIN principal_signing_keys k ON k.key_id = p.signing_key_id
LEFT JOIN LATERAL (
  SELECT s.id FROM principal_key_permissions s
  WHERE ${scopeCoversSql('s', permissionColumns('p'))} AND ${scopeInForceSql('s')}
  ORDER BY s.not_after DESC, s.id
  LIMIT 1
) cover ON true`;

export type PermissionRow = Record<string, unknown>;

/** What the row must be about: the request's identity, exact key and normalized destination. */
export interface RowSubject {
  identity: string;
  spki: Buffer;
  destination: string;
}

export type RowVerdict =
  | { ok: true; permissionId: string; signingKeyId: string; scopeId: string }
  | { ok: false; reason: DenyReason; detail: string };

/**
 * Every rule of the interop contract, cheapest first, for one row. `verified` (the gateway passes one)
 * skips re-verifying a signature that verified before over the same bytes; the operator tools pass none
 * and verify every row they report on.
 */
export function checkPermissionRow(
  row: PermissionRow,
  input: RowSubject,
  keys: SigningKeyCache,
  verified?: VerifiedSignatureCache,
): RowVerdict {
  const permissionId = text(row['permission_id']);
  const signingKeyId = text(row['signing_key_id']);
  const label = `permission ${quote(permissionId ?? '?')}`;
  // The WHERE clause already matched these; re-checking byte for byte guards against a collation or a
  // column type that compares more loosely than the signed text does.
  if (text(row['subject_identity']) !== input.identity || text(row['destination']) !== input.destination) {
    return fail('no_matching_permission', `${label}: identity or destination differs from the request`);
  }
  const subjectSpki = row['subject_spki'];
  if (!Buffer.isBuffer(subjectSpki) || !subjectSpki.equals(input.spki)) {
    return fail('no_matching_permission', `${label} is bound to another client key`);
  }
  if (row['unrevoked'] !== true) return fail('permission_revoked', `${label} is revoked`);
  if (row['started'] !== true) return fail('permission_not_yet_valid', `${label} is not valid yet`);
  if (row['unexpired'] !== true) return fail('permission_expired', `${label} has expired`);

  const signer = quote(signingKeyId ?? '?');
  if (row['signer_found'] !== true)
    return fail('signer_unknown', `${label}: signing key ${signer} does not exist`);
  if (row['signer_algorithm'] !== SIGNING_ALGORITHM) {
    return fail('signer_bad_key', `signing key ${signer}: algorithm is not ${SIGNING_ALGORITHM}`);
  }
  if (row['signer_unrevoked'] !== true) return fail('signer_revoked', `signing key ${signer} is revoked`);
  if (row['signer_started'] !== true)
    return fail('signer_not_yet_valid', `signing key ${signer} is not valid yet`);
  if (row['signer_unexpired'] !== true) return fail('signer_expired', `signing key ${signer} has expired`);
  const publicKey = keys.get(row['signer_spki']);
  if (publicKey === null) {
    return fail(
      'signer_bad_key',
      `signing key ${signer}: public key is not an EC P-256 SubjectPublicKeyInfo`,
    );
  }

  if (permissionId === null || permissionId === '' || permissionId.length > MAX_TEXT) {
    return fail('bad_signature', `${label}: permission_id is empty or too long to have been signed`);
  }
  if (signingKeyId === null || signingKeyId === '' || signingKeyId.length > MAX_TEXT) {
    return fail('bad_signature', `${label}: signing_key_id is empty or too long to have been signed`);
  }
  const badSignature = verifySignature(row, input, permissionId, signingKeyId, publicKey, verified);
  if (badSignature !== undefined) return fail('bad_signature', `${label}: ${badSignature}`);

  if (row['scope_present'] !== true) {
    return fail('scope_missing', `signing key ${signer} holds no delegation for ${input.destination}`);
  }
  if (row['scope_covers'] !== true) {
    return fail(
      'scope_insufficient',
      `signing key ${signer}: no active delegation for ${input.destination} covers ${label}'s whole window`,
    );
  }
  return { ok: true, permissionId, signingKeyId, scopeId: text(row['scope_id']) ?? '' };
}

/** Undefined when the signature verifies over the bytes rebuilt from the row; otherwise why not. */
function verifySignature(
  row: PermissionRow,
  input: RowSubject,
  permissionId: string,
  signingKeyId: string,
  publicKey: KeyObject,
  verified: VerifiedSignatureCache | undefined,
): string | undefined {
  const notBefore = row['not_before'];
  const notAfter = row['not_after'];
  const signature = row['signature'];
  if (row['window_renderable'] !== true || typeof notBefore !== 'string' || typeof notAfter !== 'string') {
    // Years outside 1-9999 (or infinity) have no canonical text, so no signature can cover them.
    return 'validity window cannot be written in canonical form';
  }
  if (!Buffer.isBuffer(signature) || signature.length === 0) {
    return `signature missing or larger than ${MAX_SIGNATURE_BYTES} bytes`;
  }
  try {
    const bytes = canonicalPermissionBytes({
      permissionId,
      signingKeyId,
      subjectIdentity: input.identity,
      subjectSpkiDer: input.spki,
      destination: input.destination,
      notBefore,
      notAfter,
    });
    // DER (r, s) as stored; OpenSSL accepts high-S, which upstream signers produce.
    const ok = () => verify('sha256', bytes, publicKey, signature);
    const signerSpki = row['signer_spki'];
    // keys.get() above only returned a key for a Buffer SPKI; the check keeps the types honest.
    const good =
      verified !== undefined && Buffer.isBuffer(signerSpki)
        ? verified.check(signerSpki, signature, bytes, ok)
        : ok();
    if (good) return undefined;
    return 'signature does not verify with the signing key';
  } catch (err) {
    return `signature cannot be checked: ${errorText(err)}`;
  }
}

/**
 * Parsed signing keys by their exact SPKI bytes: parsing costs more than verifying. Bounded, because the
 * keys come from the database; a key that does not parse is remembered as null so junk is parsed once.
 */
export class SigningKeyCache {
  readonly #entries = new Map<string, KeyObject | null>();
  constructor(readonly maxEntries: number) {}

  get(spki: unknown): KeyObject | null {
    if (!Buffer.isBuffer(spki) || spki.length === 0 || spki.length > MAX_SPKI_BYTES) return null;
    const id = spki.toString('latin1');
    const hit = this.#entries.get(id);
    if (hit !== undefined) return hit;
    const parsed = parseP256(spki);
    setBounded(this.#entries, id, parsed, this.maxEntries);
    return parsed;
  }

  clear(): void {
    this.#entries.clear();
  }
}

function parseP256(spki: Buffer): KeyObject | null {
  const parsed = parseP256Spki(spki);
  return 'problem' in parsed ? null : parsed;
}

/**
 * When the allow a row gives ends, on the caller's monotonic clock: the row's `valid_for_ms` (database
 * clock) counted from `queriedAt`, the moment the query was sent, so it can only err early. A missing
 * value means "already over".
 */
export function grantTiming(
  row: PermissionRow,
  queriedAt: number,
): { validUntilMono: number; endsWith: 'permission' | 'signer' } {
  const validForMs = row['valid_for_ms'];
  return {
    validUntilMono:
      typeof validForMs === 'number' && Number.isFinite(validForMs) ? queriedAt + validForMs : queriedAt,
    endsWith: row['signer_ends_first'] === true ? 'signer' : 'permission',
  };
}

export function errorText(err: unknown): string {
  const e = err as { message?: unknown; code?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? ` (${e.code})` : '';
  return `${message}${code}`.slice(0, 500);
}

function text(value: unknown): string | null {
  return typeof value === 'string' ? value : null;
}

function fail(reason: DenyReason, detail: string): RowVerdict {
  return { ok: false, reason, detail };
}

function quote(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
