import type postgres from 'postgres';
import { canonicalTimestampSql } from './canonical.js';
import { scopeCoversSql, scopeForSql, scopeUnrevokedSql } from './scope-coverage.js';
import { RegistryWriteError } from './write-checks.js';
import type { StoredWindow } from './write-window.js';

export interface KeyState {
  spki: Buffer;
  revoked_at: string | null;
  not_after: string;
  expired: boolean;
}

/** The signing key row, locked (SHARE: no revocation until we commit; UPDATE: also one writer at a time). */
export async function signingKeyState(
  tx: postgres.TransactionSql,
  keyId: string,
  lock: 'SHARE' | 'UPDATE',
): Promise<KeyState> {
  const [key] = await tx.unsafe<KeyState[]>(
    `SELECT public_key_spki_der AS spki, ${canonicalTimestampSql('revoked_at')} AS revoked_at,
       ${canonicalTimestampSql('not_after')} AS not_after, (now() >= not_after) AS expired
     FROM principal_signing_keys WHERE key_id = $1 FOR ${lock}`,
    [keyId],
  );
  if (key === undefined) {
    throw new RegistryWriteError(
      `signing key ${JSON.stringify(keyId)} is not registered: register it first (principal register)`,
    );
  }
  return key;
}

/** The permission being granted, as the parameters of the scope query below ($1 key, $2 destination, $3/$4 window). */
const GRANTED = {
  signingKeyId: '$1',
  destination: '$2',
  notBefore: '$3::text::timestamptz',
  notAfter: '$4::text::timestamptz',
};

/**
 * The gateway's signer and scope rules, checked in the grant's own transaction with the rows locked, so a
 * grant cannot slip between a revocation and its commit. Returns notes for what only matters later.
 */
export async function enforceSignerAndScope(
  tx: postgres.TransactionSql,
  keyId: string,
  destination: string,
  w: StoredWindow,
  key: KeyState,
): Promise<string[]> {
  const name = JSON.stringify(keyId);
  const window = `[${w.notBefore}, ${w.notAfter})`;
  if (key.revoked_at !== null) {
    throw new RegistryWriteError(
      `signing key ${name} was revoked at ${key.revoked_at}: the gateway denies whatever it signs; sign with another key`,
    );
  }
  if (key.expired) {
    throw new RegistryWriteError(
      `signing key ${name} expired at ${key.not_after}: the gateway denies whatever it signs; ` +
        'extend it (principal register --replace) or use another key',
    );
  }
  const [timing] = await tx.unsafe<{ over: boolean; signer_first: boolean }[]>(
    `SELECT ($1::text::timestamptz <= now()) AS over, ($2::text::timestamptz < $1::text::timestamptz) AS signer_first`,
    [w.notAfter, key.not_after],
  );
  if (timing?.over === true) {
    throw new RegistryWriteError(`the permission window ${window} is already over: give a later not_after`);
  }
  const scopes = await tx.unsafe<{ id: string; nb: string; na: string; covers: boolean }[]>(
    `SELECT s.id::text AS id, ${canonicalTimestampSql('s.not_before')} AS nb, ${canonicalTimestampSql('s.not_after')} AS na,
       (${scopeCoversSql('s', GRANTED)}) AS covers
     FROM principal_key_permissions s
     WHERE ${scopeForSql('s', GRANTED)} AND ${scopeUnrevokedSql('s')}
     ORDER BY s.id FOR SHARE`,
    [keyId, destination, w.notBefore, w.notAfter],
  );
  if (scopes.length === 0) {
    throw new RegistryWriteError(
      `signing key ${name} holds no delegation scope for ${destination}: grant it first ` +
        `(scope grant --key-id ${keyId} --destination ${destination})`,
    );
  }
  if (!scopes.some((s) => s.covers)) {
    const held = scopes.map((s) => `#${s.id} [${s.nb}, ${s.na})`).join(', ');
    throw new RegistryWriteError(
      `no delegation scope of signing key ${name} for ${destination} covers the whole permission window ` +
        `${window} (scopes: ${held}): shorten the permission or extend the scope (scope grant)`,
    );
  }
  return timing?.signer_first === true
    ? [
        `signing key ${name} expires at ${key.not_after}, before this permission ends: ` +
          'the gateway denies it from then on unless the key is extended',
      ]
    : [];
}
