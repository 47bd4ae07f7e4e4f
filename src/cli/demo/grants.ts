import { randomUUID, sign } from 'node:crypto';
import type postgres from 'postgres';
import { spkiDerOf } from '../../pki/keys.js';
import { listPermissionStatuses } from '../../policy/row-status.js';
import { grantScope, insertSignedPermission, registerSigningKey } from '../../registry/writer.js';
import type { DemoPki } from './pki.js';

export const DEMO_KEY_ID = 'demo-principal';

/**
 * Brings the registry to what the demo promises: the demo principal is enrolled, holds scope for the
 * destination, and the granted agent holds an active signed permission for it. Idempotent: a run that finds
 * all of that writes nothing; otherwise it adds what is missing (a new permission, an extended scope) and
 * never edits or un-revokes existing rows. Returns what it did, for the console.
 */
export async function ensureDemoGrants(
  sql: postgres.Sql,
  pki: DemoPki,
  destination: string,
): Promise<string[]> {
  const done: string[] = [];
  const principalSpki = spkiDerOf(pki.principalKey);
  const [key] = await sql<{ spki: Buffer; usable: boolean; revoked: boolean }[]>`
    SELECT public_key_spki_der AS spki, revoked_at IS NOT NULL AS revoked,
      (revoked_at IS NULL AND not_before <= now() AND now() < not_after) AS usable
    FROM principal_signing_keys WHERE key_id = ${DEMO_KEY_ID}`;
  if (key?.revoked === true) {
    throw new Error(
      `the demo's signing key ${DEMO_KEY_ID} was revoked (principal revoke), and a revoked key id stays revoked: ` +
        'delete the demo state directory to start afresh',
    );
  }
  if (key === undefined || !key.spki.equals(principalSpki) || !key.usable) {
    await registerSigningKey(sql, {
      keyId: DEMO_KEY_ID,
      publicKeySpkiDer: principalSpki,
      replace: key !== undefined,
      notBefore: { fromNow: '-1 minute' },
    });
    done.push(`registered signing key ${DEMO_KEY_ID}`);
  }

  const rows = await listPermissionStatuses(sql, {
    subjectIdentity: pki.granted.identity,
    destination,
  });
  const active = rows.some((r) => r.status === 'active' && r.subjectSpki?.equals(pki.granted.spki) === true);
  if (active) return done;

  // A scope from a minute ago covers a permission that starts now; re-granting extends, never shortens.
  const scope = await grantScope(sql, {
    signingKeyId: DEMO_KEY_ID,
    destination,
    notBefore: { fromNow: '-1 minute' },
  });
  if (scope.action !== 'unchanged') done.push(`scope #${scope.id} ${scope.action} for ${destination}`);
  const permission = await insertSignedPermission(sql, {
    permissionId: `demo-${randomUUID()}`,
    signingKeyId: DEMO_KEY_ID,
    subjectIdentity: pki.granted.identity,
    subjectSpkiDer: pki.granted.spki,
    destination,
    enforceSignerAndScope: true,
    sign: (bytes) => sign('sha256', bytes, pki.principalKey),
  });
  done.push(
    `signed permission ${permission.permissionId}: ${pki.granted.identity} -> ${destination} until ${permission.notAfter}`,
  );
  return done;
}
