import { verify } from 'node:crypto';
import type postgres from 'postgres';
import { normalizeDestination } from '../destination/normalize.js';
import { identityProblem } from '../identity/identity-rule.js';
import { canonicalPermissionBytes, canonicalTimestampSql } from './canonical.js';
import { enforceSignerAndScope, signingKeyState } from './grant-rules.js';
import { SIGNING_ALGORITHM } from './signing-key.js';
import { assertP256Spki, RegistryWriteError, requireText } from './write-checks.js';
import { resolveWindow, type StoredWindow, type TimeInput } from './write-window.js';

/**
 * Admin-side writes to the registry (the operator CLI, the demo and the tests). The gateway itself never
 * writes. The rules a grant must meet live in grant-rules.ts, the validity windows in write-window.ts.
 *
 * Timestamps are resolved by PostgreSQL and read back in canonical text before anything is signed, so the
 * signed bytes are exactly what the row stores (a JS Date would drop microseconds).
 */

export { SIGNING_ALGORITHM };

const DEFAULT_KEY_LIFETIME = '365 days';
const DEFAULT_PERMISSION_LIFETIME = '30 days';

export interface SigningKeyInput {
  keyId: string;
  publicKeySpkiDer: Uint8Array;
  /** Default: the database's now(). */
  notBefore?: TimeInput;
  /** Default: notBefore + 365 days. */
  notAfter?: TimeInput;
}

export async function insertSigningKey(sql: postgres.Sql, input: SigningKeyInput): Promise<StoredWindow> {
  requireText('keyId', input.keyId);
  const spki = Buffer.from(input.publicKeySpkiDer);
  assertP256Spki(spki, `signing key ${input.keyId}`);
  return sql.begin(async (tx) => {
    const w = await resolveWindow(tx, input.notBefore, input.notAfter, DEFAULT_KEY_LIFETIME);
    // ::text::timestamptz keeps microseconds (see WINDOW_SQL).
    await tx`
      INSERT INTO principal_signing_keys (key_id, algorithm, public_key_spki_der, not_before, not_after)
      VALUES (${input.keyId}, ${SIGNING_ALGORITHM}, ${spki}, ${w.notBefore}::text::timestamptz, ${w.notAfter}::text::timestamptz)`;
    return w;
  });
}

export interface ScopeInput {
  signingKeyId: string;
  /** Normalized before storing (`api.example.com` becomes `api.example.com:443`). */
  destination: string;
  notBefore?: TimeInput;
  notAfter?: TimeInput;
}

/** Delegation scope: lets `signingKeyId` grant `destination`. Returns the new row's id. */
export async function insertScope(
  sql: postgres.Sql,
  input: ScopeInput,
): Promise<StoredWindow & { id: string; destination: string }> {
  requireText('signingKeyId', input.signingKeyId);
  const destination = normalizeDestination(input.destination);
  return sql.begin(async (tx) => {
    const w = await resolveWindow(tx, input.notBefore, input.notAfter, DEFAULT_KEY_LIFETIME);
    const [row] = await tx<{ id: string }[]>`
      INSERT INTO principal_key_permissions (signing_key_id, destination, not_before, not_after)
      VALUES (${input.signingKeyId}, ${destination}, ${w.notBefore}::text::timestamptz, ${w.notAfter}::text::timestamptz)
      RETURNING id::text AS id`;
    if (row === undefined) throw new RegistryWriteError('INSERT … RETURNING returned no row');
    return { ...w, id: row.id, destination };
  });
}

export interface SignedPermissionInput {
  permissionId: string;
  signingKeyId: string;
  subjectIdentity: string;
  subjectSpkiDer: Uint8Array;
  /** Normalized before signing and storing. */
  destination: string;
  /** Default: the database's now(). */
  notBefore?: TimeInput;
  /** Default: notBefore + 30 days. */
  notAfter?: TimeInput;
  /** With notAfter absent: the window's length after notBefore, a PostgreSQL interval. Default '30 days'. */
  lifetime?: string;
  /**
   * Refuse, inside the insert's transaction, a row the gateway would deny whatever the time: a signer that
   * is revoked or expired, a window already over, or no unrevoked delegation scope covering the whole window.
   * The operator CLI sets it; tests that need deniable rows leave it off.
   */
  enforceSignerAndScope?: boolean;
  /** Signs the canonical bytes with the signing key's private key; returns a DER ECDSA signature. */
  sign: (bytes: Buffer) => Buffer | Promise<Buffer>;
}

export interface StoredPermission extends StoredWindow {
  permissionId: string;
  destination: string;
  signedBytes: Buffer;
  signature: Buffer;
  /** Things the operator should know that do not stop the grant (e.g. the signer expires first). */
  notes: string[];
}

/**
 * Signs and stores one permission row. The signature is checked against the signing key's stored public
 * key before the insert, so a wrong private key fails here rather than as a deny at CONNECT time.
 */
export async function insertSignedPermission(
  sql: postgres.Sql,
  input: SignedPermissionInput,
): Promise<StoredPermission> {
  requireText('permissionId', input.permissionId);
  requireText('signingKeyId', input.signingKeyId);
  const identityIssue = identityProblem(input.subjectIdentity);
  if (identityIssue !== undefined) throw new RegistryWriteError(identityIssue);
  const destination = normalizeDestination(input.destination);
  const subjectSpki = Buffer.from(input.subjectSpkiDer);
  if (subjectSpki.length === 0) throw new RegistryWriteError('subjectSpkiDer is empty');

  return sql.begin(async (tx) => {
    const w = await resolveWindow(
      tx,
      input.notBefore,
      input.notAfter,
      input.lifetime ?? DEFAULT_PERMISSION_LIFETIME,
    );
    // FOR SHARE: a concurrent revocation of the key waits until this grant is committed or rolled back.
    const key = await signingKeyState(tx, input.signingKeyId, 'SHARE');
    const notes = input.enforceSignerAndScope
      ? await enforceSignerAndScope(tx, input.signingKeyId, destination, w, key)
      : [];
    const signedBytes = canonicalPermissionBytes({
      permissionId: input.permissionId,
      signingKeyId: input.signingKeyId,
      subjectIdentity: input.subjectIdentity,
      subjectSpkiDer: subjectSpki,
      destination,
      notBefore: w.notBefore,
      notAfter: w.notAfter,
    });
    const signature = Buffer.from(await input.sign(signedBytes));
    const publicKey = assertP256Spki(key.spki, `signing key ${input.signingKeyId}`);
    if (!verify('sha256', signedBytes, publicKey, signature)) {
      throw new RegistryWriteError(
        `signature for permission ${JSON.stringify(input.permissionId)} does not verify with the public key ` +
          `of signing key ${JSON.stringify(input.signingKeyId)}: sign with that key's private key (DER ECDSA P-256/SHA-256)`,
      );
    }
    await tx`
      INSERT INTO permission_registry (permission_id, signing_key_id, subject_identity,
        subject_public_key_spki_der, destination, not_before, not_after, signature)
      VALUES (${input.permissionId}, ${input.signingKeyId}, ${input.subjectIdentity}, ${subjectSpki},
        ${destination}, ${w.notBefore}::text::timestamptz, ${w.notAfter}::text::timestamptz, ${signature})`;
    return { ...w, permissionId: input.permissionId, destination, signedBytes, signature, notes };
  });
}

/**
 * Revocations: new CONNECTs are denied at once, and gateways close the open tunnels they back within their
 * live check's bound (README, "Live authorization"); a cached allow is invalidated the same way.
 */
export async function revokePermission(sql: postgres.Sql, permissionId: string): Promise<boolean> {
  const rows = await sql`
    UPDATE permission_registry SET revoked_at = now(), updated_at = now()
    WHERE permission_id = ${permissionId} AND revoked_at IS NULL`;
  return rows.count > 0;
}

export async function revokeSigningKey(sql: postgres.Sql, keyId: string): Promise<boolean> {
  const rows = await sql`
    UPDATE principal_signing_keys SET revoked_at = now(), updated_at = now()
    WHERE key_id = ${keyId} AND revoked_at IS NULL`;
  return rows.count > 0;
}

export async function revokeScope(sql: postgres.Sql, scopeId: string): Promise<boolean> {
  const rows = await sql`
    UPDATE principal_key_permissions SET revoked_at = now(), updated_at = now()
    WHERE id = ${scopeId}::bigint AND revoked_at IS NULL`;
  return rows.count > 0;
}

/** The result of {@link registerSigningKey}. */
export interface RegisteredKey extends StoredWindow {
  action: 'inserted' | 'replaced';
  /** --replace with a different public key: rows signed before no longer verify. */
  keyChanged: boolean;
  /** Permission rows signed under this key id before the change (0 for a new key). */
  permissionsSigned: number;
}

/**
 * Registers a principal's public key under `keyId`, or with `replace` changes the key and window of an
 * existing id. A revoked key id is never brought back: revocation is final for an id, so an operator
 * re-running a script cannot undo it by accident; a new key needs a new id.
 */
export async function registerSigningKey(
  sql: postgres.Sql,
  input: SigningKeyInput & { replace?: boolean; lifetime?: string },
): Promise<RegisteredKey> {
  requireText('keyId', input.keyId);
  const spki = Buffer.from(input.publicKeySpkiDer);
  assertP256Spki(spki, `signing key ${input.keyId}`);
  const name = JSON.stringify(input.keyId);
  return sql.begin(async (tx) => {
    const [existing] = await tx.unsafe<{ spki: Buffer; revoked_at: string | null }[]>(
      `SELECT public_key_spki_der AS spki, ${canonicalTimestampSql('revoked_at')} AS revoked_at
       FROM principal_signing_keys WHERE key_id = $1 FOR UPDATE`,
      [input.keyId],
    );
    const [other] = await tx<{ key_id: string }[]>`
      SELECT key_id FROM principal_signing_keys
      WHERE public_key_spki_der = ${spki} AND key_id <> ${input.keyId}`;
    if (other !== undefined) {
      throw new RegistryWriteError(
        `this public key is already registered as key id ${JSON.stringify(other.key_id)}: ` +
          'each key has exactly one key id; use that id or create a new key',
      );
    }
    if (existing !== undefined && input.replace !== true) {
      throw new RegistryWriteError(
        `key id ${name} is already registered: pass --replace to change its public key or validity window`,
      );
    }
    if (existing === undefined && input.replace === true) {
      throw new RegistryWriteError(`there is no key id ${name} to replace: drop --replace to register it`);
    }
    if (existing?.revoked_at != null) {
      throw new RegistryWriteError(
        `key id ${name} was revoked at ${existing.revoked_at} and stays revoked: ` +
          'register the new key under a new key id',
      );
    }
    const w = await resolveWindow(
      tx,
      input.notBefore,
      input.notAfter,
      input.lifetime ?? DEFAULT_KEY_LIFETIME,
    );
    if (existing === undefined) {
      await tx`
        INSERT INTO principal_signing_keys (key_id, algorithm, public_key_spki_der, not_before, not_after)
        VALUES (${input.keyId}, ${SIGNING_ALGORITHM}, ${spki}, ${w.notBefore}::text::timestamptz, ${w.notAfter}::text::timestamptz)`;
      return { ...w, action: 'inserted', keyChanged: false, permissionsSigned: 0 };
    }
    await tx`
      UPDATE principal_signing_keys
      SET public_key_spki_der = ${spki}, not_before = ${w.notBefore}::text::timestamptz,
        not_after = ${w.notAfter}::text::timestamptz, updated_at = now()
      WHERE key_id = ${input.keyId}`;
    const [count] = await tx<{ n: number }[]>`
      SELECT count(*)::int AS n FROM permission_registry WHERE signing_key_id = ${input.keyId}`;
    return {
      ...w,
      action: 'replaced',
      keyChanged: !existing.spki.equals(spki),
      permissionsSigned: count?.n ?? 0,
    };
  });
}

/** The result of {@link grantScope}: which row now covers the requested window, and how it got there. */
export interface ScopeGrant extends StoredWindow {
  id: string;
  destination: string;
  /** inserted: a new row; extended: an existing row's window grew to include the request; unchanged: already covered. */
  action: 'inserted' | 'extended' | 'unchanged';
}

/**
 * Grants `signingKeyId` the right to delegate `destination` for a window, without ever shortening what is
 * already granted: permissions already issued stay covered. An unrevoked scope row for the same key and
 * destination whose window overlaps or touches the new one is extended to the union of them all (so a
 * permission spanning the old and the new window is covered by one row, as the gateway requires);
 * otherwise a new row is inserted (a gap between two windows is not granted). Revoked rows are never
 * touched: re-granting after a revocation inserts a new row.
 */
export async function grantScope(
  sql: postgres.Sql,
  input: ScopeInput & { lifetime?: string },
): Promise<ScopeGrant> {
  requireText('signingKeyId', input.signingKeyId);
  const destination = normalizeDestination(input.destination);
  return sql.begin(async (tx) => {
    // FOR UPDATE on the key serializes scope grants per key, so two merges cannot interleave.
    const key = await signingKeyState(tx, input.signingKeyId, 'UPDATE');
    const name = JSON.stringify(input.signingKeyId);
    if (key.revoked_at !== null) {
      throw new RegistryWriteError(
        `signing key ${name} was revoked at ${key.revoked_at}: it cannot be granted scope`,
      );
    }
    if (key.expired) {
      throw new RegistryWriteError(
        `signing key ${name} expired at ${key.not_after}: extend it first (principal register --replace)`,
      );
    }
    const w = await resolveWindow(
      tx,
      input.notBefore,
      input.notAfter,
      input.lifetime ?? DEFAULT_KEY_LIFETIME,
    );
    const params = [input.signingKeyId, destination, w.notBefore, w.notAfter];
    const touching = `signing_key_id = $1 AND destination = $2 AND revoked_at IS NULL
      AND not_before <= $4::text::timestamptz AND $3::text::timestamptz <= not_after`;
    const rows = await tx.unsafe<{ id: string }[]>(
      `SELECT id::text AS id FROM principal_key_permissions WHERE ${touching} ORDER BY id FOR UPDATE`,
      params,
    );
    const target = rows[0]?.id;
    if (target === undefined) {
      const inserted = await insertScopeRow(tx, input.signingKeyId, destination, w);
      return { ...w, id: inserted, destination, action: 'inserted' };
    }
    const [merged] = await tx.unsafe<{ nb: string; na: string; changed: boolean }[]>(
      `WITH u AS (
         SELECT least(min(not_before), $3::text::timestamptz) AS nb,
                greatest(max(not_after), $4::text::timestamptz) AS na
         FROM principal_key_permissions WHERE ${touching}
       ), t AS (SELECT not_before, not_after FROM principal_key_permissions WHERE id = $5::bigint),
       upd AS (
         UPDATE principal_key_permissions p SET not_before = u.nb, not_after = u.na, updated_at = now()
         FROM u, t WHERE p.id = $5::bigint AND (t.not_before, t.not_after) IS DISTINCT FROM (u.nb, u.na)
         RETURNING p.id
       )
       SELECT ${canonicalTimestampSql('u.nb')} AS nb, ${canonicalTimestampSql('u.na')} AS na,
         EXISTS (SELECT 1 FROM upd) AS changed
       FROM u`,
      [...params, target],
    );
    if (merged === undefined) throw new RegistryWriteError('scope merge returned no row');
    return {
      notBefore: merged.nb,
      notAfter: merged.na,
      id: target,
      destination,
      action: merged.changed ? 'extended' : 'unchanged',
    };
  });
}

/** Revokes every unrevoked scope row of `signingKeyId` for `destination`; returns their ids. */
export async function revokeScopesFor(
  sql: postgres.Sql,
  signingKeyId: string,
  destination: string,
): Promise<string[]> {
  const normalized = normalizeDestination(destination);
  const rows = await sql<{ id: string }[]>`
    UPDATE principal_key_permissions SET revoked_at = now(), updated_at = now()
    WHERE signing_key_id = ${signingKeyId} AND destination = ${normalized} AND revoked_at IS NULL
    RETURNING id::text AS id`;
  return rows.map((r) => r.id).sort((a, b) => Number(a) - Number(b));
}

async function insertScopeRow(
  tx: postgres.TransactionSql,
  signingKeyId: string,
  destination: string,
  w: StoredWindow,
): Promise<string> {
  const [row] = await tx<{ id: string }[]>`
    INSERT INTO principal_key_permissions (signing_key_id, destination, not_before, not_after)
    VALUES (${signingKeyId}, ${destination}, ${w.notBefore}::text::timestamptz, ${w.notAfter}::text::timestamptz)
    RETURNING id::text AS id`;
  if (row === undefined) throw new RegistryWriteError('INSERT … RETURNING returned no row');
  return row.id;
}
