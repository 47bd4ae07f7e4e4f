import type postgres from 'postgres';
import { spkiFingerprint } from '../pki/fingerprint.js';
import { listPermissionStatuses } from '../policy/row-status.js';
import { canonicalTimestampSql } from '../registry/canonical.js';
import { readExtensionVersion } from '../registry/migrate.js';
import { type WindowStatusRow, windowStatusColumns } from '../registry/window-status.js';

/** `GET /api/registry`: what the registry tab shows (web/src/types.ts uses this type). */
export interface RegistryView {
  readonly extension_version: number;
  readonly principals: ReadonlyArray<{
    readonly key_id: string;
    readonly algorithm: string;
    readonly spki_sha256: string;
    readonly status: string;
    readonly not_before: string;
    readonly not_after: string;
    readonly revoked_at: string | null;
    readonly created_at: string;
  }>;
  readonly scopes: ReadonlyArray<{
    readonly id: string;
    readonly signing_key_id: string;
    readonly destination: string;
    readonly status: string;
    readonly not_before: string;
    readonly not_after: string;
    readonly revoked_at: string | null;
  }>;
  readonly permissions: ReadonlyArray<{
    readonly permission_id: string;
    readonly status: string;
    readonly identity: string;
    readonly spki_sha256: string | null;
    readonly destination: string;
    readonly signing_key_id: string;
    readonly not_before: string | null;
    readonly not_after: string | null;
    readonly revoked_at: string | null;
    readonly deny_reason: string | null;
    readonly detail: string | null;
    readonly problem: { readonly kind: string; readonly detail: string } | null;
  }>;
  readonly permissions_total: number;
  readonly agents: ReadonlyArray<{
    readonly identity: string;
    readonly spki_sha256: string | null;
    readonly permissions: string[];
  }>;
}

/** Rows shown at most per kind: a registry larger than this is summarized, not shipped to a browser whole. */
export const MAX_ROWS = 5000;

/**
 * The authority registry as the dashboard shows it: principals (signing keys), their delegations
 * (scopes), and every permission with its status as `permission list` judges it (the engine's own
 * per-row check, policy/row-status.ts), grouped into agents (identity and key). Read with the dashboard's
 * role, which can SELECT and nothing else on these tables.
 */
export async function readRegistry(sql: postgres.Sql): Promise<RegistryView> {
  const [keys, scopes, permissions, extension] = await Promise.all([
    sql.unsafe<
      Array<WindowStatusRow & { key_id: string; algorithm: string; spki: Buffer; created_at: string }>
    >(
      `SELECT k.key_id, k.algorithm, k.public_key_spki_der AS spki, ${windowStatusColumns('k')},
         ${canonicalTimestampSql('k.created_at')} AS created_at
       FROM principal_signing_keys k ORDER BY k.created_at, k.key_id LIMIT ${MAX_ROWS}`,
    ),
    sql.unsafe<Array<WindowStatusRow & { id: string; key_id: string; destination: string }>>(
      `SELECT s.id::text AS id, s.signing_key_id AS key_id, s.destination, ${windowStatusColumns('s')}
       FROM principal_key_permissions s ORDER BY s.signing_key_id, s.destination, s.id LIMIT ${MAX_ROWS}`,
    ),
    listPermissionStatuses(sql),
    readExtensionVersion(sql),
  ]);
  const agents = new Map<string, { identity: string; spki_sha256: string | null; permissions: string[] }>();
  const shown = permissions.slice(0, MAX_ROWS).map((p) => {
    const fingerprint = p.subjectSpki === null ? null : spkiFingerprint(p.subjectSpki);
    const agentKey = `${p.subjectIdentity}\u0000${fingerprint ?? ''}`;
    const agent = agents.get(agentKey) ?? {
      identity: p.subjectIdentity,
      spki_sha256: fingerprint,
      permissions: [],
    };
    agent.permissions.push(p.permissionId);
    agents.set(agentKey, agent);
    return {
      permission_id: p.permissionId,
      status: p.status,
      identity: p.subjectIdentity,
      spki_sha256: fingerprint,
      destination: p.destination,
      signing_key_id: p.signingKeyId,
      not_before: p.notBefore,
      not_after: p.notAfter,
      revoked_at: p.revokedAt,
      deny_reason: p.denyReason ?? null,
      detail: p.detail ?? null,
      problem: p.problem ?? null,
    };
  });
  return {
    extension_version: extension,
    principals: keys.map((k) => ({
      key_id: k.key_id,
      algorithm: k.algorithm,
      spki_sha256: spkiFingerprint(k.spki),
      status: k.status,
      not_before: k.not_before,
      not_after: k.not_after,
      revoked_at: k.revoked_at,
      created_at: k.created_at,
    })),
    scopes: scopes.map((s) => ({
      id: s.id,
      signing_key_id: s.key_id,
      destination: s.destination,
      status: s.status,
      not_before: s.not_before,
      not_after: s.not_after,
      revoked_at: s.revoked_at,
    })),
    permissions: shown,
    permissions_total: permissions.length,
    agents: [...agents.values()],
  };
}
