import type postgres from 'postgres';
import { canonicalTimestampSql } from './canonical.js';
import { revokePermission, revokeScope, revokeSigningKey } from './writer.js';

/** The three kinds of registry row that can be revoked. */
export type RevocableKind = 'permission' | 'signing key' | 'scope';

const ROWS: Record<RevocableKind, { table: string; id: string; fn: string }> = {
  'signing key': { table: 'principal_signing_keys', id: 'key_id', fn: 'revoke_signing_key($1::text)' },
  scope: { table: 'principal_key_permissions', id: 'id::text', fn: 'revoke_scope($1::bigint)' },
  permission: { table: 'permission_registry', id: 'permission_id', fn: 'revoke_permission($1::text)' },
};

/** With write access (the admin role, the CLI): writer.ts's UPDATE. True when this call revoked it. */
export function revokeDirectly(sql: postgres.Sql, kind: RevocableKind, id: string): Promise<boolean> {
  switch (kind) {
    case 'permission':
      return revokePermission(sql, id);
    case 'signing key':
      return revokeSigningKey(sql, id);
    case 'scope':
      return revokeScope(sql, id);
  }
}

/**
 * Without write access (the dashboard's role): the same UPDATE, run by the extension's SECURITY DEFINER
 * function (migrations/extension/0002_dashboard_revocation.sql), which can only revoke.
 */
export async function revokeThroughExtension(
  sql: postgres.Sql,
  kind: RevocableKind,
  id: string,
): Promise<boolean> {
  if (kind === 'scope' && !/^[0-9]{1,18}$/.test(id)) return false;
  const [row] = await sql.unsafe<{ revoked: boolean }[]>(
    `SELECT agent_gateway_ext.${ROWS[kind].fn} AS revoked`,
    [id],
  );
  return row?.revoked === true;
}

/** When the row was revoked; null: not revoked; undefined: there is no such row. */
export async function revokedAt(
  sql: postgres.Sql,
  kind: RevocableKind,
  id: string,
): Promise<string | null | undefined> {
  if (kind === 'scope' && !/^[0-9]{1,18}$/.test(id)) return undefined;
  const { table, id: idColumn } = ROWS[kind];
  const [row] = await sql.unsafe<{ revoked_at: string | null }[]>(
    `SELECT ${canonicalTimestampSql('revoked_at')} AS revoked_at FROM ${table} WHERE ${idColumn} = $1`,
    [id],
  );
  return row === undefined ? undefined : row.revoked_at;
}
