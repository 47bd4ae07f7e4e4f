import type postgres from 'postgres';

/**
 * The signed bytes of a permission row rebuilt from the interop contract's text, independently of
 * src/registry/canonical.ts, so that a signature checked with openssl against them checks the contract.
 */

/** A permission row's signed fields, as read from or written to the table. */
export interface SignedFields {
  permission_id: string;
  signing_key_id: string;
  subject_identity: string;
  spki: Buffer;
  destination: string;
  nb: string;
  na: string;
}

/** The eight canonical lines of the contract ("agent-gateway-permission-v1"). */
export function canonicalText(row: SignedFields): string {
  return [
    'agent-gateway-permission-v1',
    `permission_id=${row.permission_id}`,
    `signing_key_id=${row.signing_key_id}`,
    `subject_identity=${row.subject_identity}`,
    `subject_public_key_spki_der=${row.spki.toString('hex')}`,
    `destination=${row.destination}`,
    `not_before=${row.nb}`,
    `not_after=${row.na}`,
    '',
  ].join('\n');
}

/** One stored permission with its signature, timestamps as the contract's text (microseconds kept). */
export async function readSignedRow(
  sql: postgres.Sql,
  permissionId: string,
): Promise<(SignedFields & { signature: Buffer }) | undefined> {
  const [row] = await sql<(SignedFields & { signature: Buffer })[]>`
    SELECT permission_id, signing_key_id, subject_identity, subject_public_key_spki_der AS spki, destination,
      to_char(not_before AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS nb,
      to_char(not_after AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS na, signature
    FROM permission_registry WHERE permission_id = ${permissionId}`;
  return row;
}
