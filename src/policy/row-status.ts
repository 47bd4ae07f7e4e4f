import type postgres from 'postgres';
import { DestinationError, normalizeDestination } from '../destination/normalize.js';
import { canonicalTimestampSql } from '../registry/canonical.js';
import { permissionColumns, scopeCoversSql, scopeForSql } from '../registry/scope-coverage.js';
import type { DenyReason } from './decision.js';
import {
  checkPermissionRow,
  PERMISSION_ROW_COLUMNS,
  PERMISSION_ROW_FROM,
  type PermissionRow,
  type RowVerdict,
  SigningKeyCache,
} from './row-check.js';

/**
 * How the gateway would judge each stored permission row right now, for `permission list` and
 * `registry verify`. The judgement is the engine's own per-row check (row-check.ts), run twice:
 *
 * - as is, on the database clock: the row's status now;
 * - with every time and revocation fact taken as satisfied: what is wrong with the row whatever the time,
 *   i.e. a tampered, unsigned or out-of-scope row. A row that is only expired or revoked has no problem.
 */

/** A row's status now. The first four come from the row itself, the rest from its signer and scope. */
export type PermissionStatus =
  | 'active'
  | 'revoked'
  | 'not-yet-valid'
  | 'expired'
  | 'signer-inactive'
  | 'scope-inactive'
  | IntegrityProblem;

/**
 * Reasons a row is denied whatever the time and whatever was revoked: `registry verify` fails on these.
 * `unmatchable`: the stored identity, destination or key can never equal what a CONNECT presents
 * (destination not in normalized form, key too large), so the row can never allow anything.
 */
export type IntegrityProblem = 'bad-signature' | 'signer-invalid' | 'outside-scope' | 'unmatchable';

export interface PermissionRowStatus {
  readonly permissionId: string;
  readonly signingKeyId: string;
  readonly subjectIdentity: string;
  /** Null when the stored key is larger than any real certificate key (then also `unmatchable`). */
  readonly subjectSpki: Buffer | null;
  readonly destination: string;
  readonly notBefore: string | null;
  readonly notAfter: string | null;
  readonly revokedAt: string | null;
  readonly status: PermissionStatus;
  /** The engine's reason and detail for a deny; undefined when active. */
  readonly denyReason?: DenyReason;
  readonly detail?: string;
  /** What is wrong with the row regardless of time and revocation; undefined when nothing. */
  readonly problem?: { readonly kind: IntegrityProblem; readonly detail: string };
}

export interface PermissionFilter {
  readonly permissionId?: string;
  readonly signingKeyId?: string;
  readonly subjectIdentity?: string;
  /** Compared with the stored destination after normalizing this value. */
  readonly destination?: string;
}

/** Coverage facts for the "whatever the time" pass: revoked scope rows count, the clock does not. */
const EXTRA_COLUMNS = `,
  ${canonicalTimestampSql('p.revoked_at')} AS revoked_at_text,
  EXISTS (
    SELECT 1 FROM principal_key_permissions s WHERE ${scopeForSql('s', permissionColumns('p'))}
  ) AS scope_ever_present,
  EXISTS (
    SELECT 1 FROM principal_key_permissions s WHERE ${scopeCoversSql('s', permissionColumns('p'))}
  ) AS scope_ever_covers`;

/** Batch size when walking the whole registry: bounded memory however many rows there are. */
const BATCH = 500;

/**
 * Judges every permission row matching `filter` (all rows when empty), in creation order, handing each to
 * `onRow`. Rows are read in batches through a cursor, so a large registry does not fill memory.
 */
export async function forEachPermissionStatus(
  sql: postgres.Sql | postgres.TransactionSql,
  filter: PermissionFilter,
  onRow: (status: PermissionRowStatus) => void | Promise<void>,
): Promise<void> {
  const where: string[] = [];
  const params: string[] = [];
  const add = (column: string, value: string | undefined) => {
    if (value === undefined) return;
    params.push(value);
    where.push(`${column} = $${params.length}`);
  };
  add('p.permission_id', filter.permissionId);
  add('p.signing_key_id', filter.signingKeyId);
  add('p.subject_identity', filter.subjectIdentity);
  add(
    'p.destination',
    filter.destination === undefined ? undefined : normalizeDestination(filter.destination),
  );
  const query = `SELECT${PERMISSION_ROW_COLUMNS}${EXTRA_COLUMNS}${PERMISSION_ROW_FROM}
    ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY p.created_at, p.permission_id`;
  const keys = new SigningKeyCache(256);
  for await (const rows of sql.unsafe<PermissionRow[]>(query, params).cursor(BATCH)) {
    for (const row of rows) await onRow(judgeRow(row, keys));
  }
}

/** {@link forEachPermissionStatus}, collected. */
export async function listPermissionStatuses(
  sql: postgres.Sql | postgres.TransactionSql,
  filter: PermissionFilter = {},
): Promise<PermissionRowStatus[]> {
  const out: PermissionRowStatus[] = [];
  await forEachPermissionStatus(sql, filter, (row) => {
    out.push(row);
  });
  return out;
}

/** Both passes of the engine's check over one row, folded into a status and an optional problem. */
export function judgeRow(row: PermissionRow, keys: SigningKeyCache): PermissionRowStatus {
  const identity = stringOr(row['subject_identity'], '');
  const destination = stringOr(row['destination'], '');
  const subjectSpki = Buffer.isBuffer(row['subject_spki']) ? row['subject_spki'] : null;
  const base = {
    permissionId: stringOr(row['permission_id'], ''),
    signingKeyId: stringOr(row['signing_key_id'], ''),
    subjectIdentity: identity,
    subjectSpki,
    destination,
    notBefore: typeof row['not_before'] === 'string' ? row['not_before'] : null,
    notAfter: typeof row['not_after'] === 'string' ? row['not_after'] : null,
    revokedAt: typeof row['revoked_at_text'] === 'string' ? row['revoked_at_text'] : null,
  };

  // The row as a CONNECT would present it: its own identity and key, its destination normalized as the
  // gateway normalizes every request. A stored destination that is not already normalized never matches.
  const normalized = normalizedOrNull(destination);
  const unmatchable =
    subjectSpki === null
      ? 'the stored subject key is larger than any certificate key: no client can present it'
      : normalized !== destination
        ? `destination ${JSON.stringify(destination)} is not in normalized form` +
          `${normalized === null ? ' (not a valid destination)' : ` (${normalized})`}: no CONNECT can match it`
        : undefined;
  if (unmatchable !== undefined || normalized === null || subjectSpki === null) {
    const detail = unmatchable ?? 'unmatchable';
    return { ...base, status: 'unmatchable', detail, problem: { kind: 'unmatchable', detail } };
  }
  const subject = { identity, spki: subjectSpki, destination: normalized };

  const now = checkPermissionRow(row, subject, keys);
  const timeless = checkPermissionRow(
    {
      ...row,
      unrevoked: true,
      started: true,
      unexpired: true,
      signer_unrevoked: true,
      signer_started: true,
      signer_unexpired: true,
      scope_present: row['scope_ever_present'],
      scope_covers: row['scope_ever_covers'],
    },
    subject,
    keys,
  );
  const problem = timeless.ok ? undefined : { kind: problemOf(timeless.reason), detail: timeless.detail };
  if (now.ok) return { ...base, status: 'active' };
  return {
    ...base,
    status: statusOf(now, problem?.kind),
    denyReason: now.reason,
    detail: now.detail,
    ...(problem === undefined ? {} : { problem }),
  };
}

function statusOf(verdict: Extract<RowVerdict, { ok: false }>, problem: IntegrityProblem | undefined) {
  switch (verdict.reason) {
    case 'permission_revoked':
      return 'revoked';
    case 'permission_not_yet_valid':
      return 'not-yet-valid';
    case 'permission_expired':
      return 'expired';
    case 'signer_revoked':
    case 'signer_not_yet_valid':
    case 'signer_expired':
      return 'signer-inactive';
    case 'scope_missing':
    case 'scope_insufficient':
      // Covered whatever the time: the scope that covers it was revoked or is outside its own window now.
      return problem ?? 'scope-inactive';
    default:
      return problem ?? problemOf(verdict.reason);
  }
}

function problemOf(reason: DenyReason): IntegrityProblem {
  switch (reason) {
    case 'bad_signature':
      return 'bad-signature';
    case 'signer_unknown':
    case 'signer_bad_key':
      return 'signer-invalid';
    case 'scope_missing':
    case 'scope_insufficient':
      return 'outside-scope';
    default:
      // no_matching_permission: the stored text differs from what a request can carry.
      return 'unmatchable';
  }
}

function normalizedOrNull(destination: string): string | null {
  try {
    return normalizeDestination(destination);
  } catch (err) {
    if (err instanceof DestinationError) return null;
    throw err;
  }
}

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback;
}
