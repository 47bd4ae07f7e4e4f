import type postgres from 'postgres';
import type { QueryGate } from '../registry/query-gate.js';
import type { RecheckResult, RecheckSubject, RecheckVerdict } from './decision.js';
import {
  checkPermissionRow,
  errorText,
  grantTiming,
  MAX_TEXT,
  PERMISSION_ROW_COLUMNS,
  PERMISSION_ROW_FROM,
  type PermissionRow,
  type SigningKeyCache,
} from './row-check.js';
import type { VerifiedSignatureCache } from './verified-signatures.js';

/**
 * The live check's half of the policy: the rows behind open tunnels, read again by permission id (revoked
 * and edited rows included, which the CONNECT lookup never reads), and judged by the same
 * checkPermissionRow as a new CONNECT. Admission and re-validation are one judgement, run again.
 */
const RECHECK_QUERY = `
SELECT${PERMISSION_ROW_COLUMNS}${PERMISSION_ROW_FROM}
WHERE p.permission_id = ANY($1::text[])`;

/** Permission ids per query: bounded statements however many tunnels are open. */
const BATCH = 2000;

export interface RecheckDeps {
  readonly sql: postgres.Sql;
  readonly gate: QueryGate;
  readonly keys: SigningKeyCache;
  readonly verified: VerifiedSignatureCache;
  readonly now: () => number;
  readonly deadlineMs: number;
}

export async function recheckSubjects(
  deps: RecheckDeps,
  subjects: readonly RecheckSubject[],
): Promise<RecheckResult> {
  try {
    const ids = [...new Set(subjects.map((s) => s.permissionId))];
    const rows = new Map<string, PermissionRow>();
    let queriedAt = deps.now();
    for (let i = 0; i < ids.length; i += BATCH) {
      const batch = ids.slice(i, i + BATCH);
      if (i === 0) queriedAt = deps.now();
      const result = await deps.gate.run(
        () => deps.sql.unsafe<PermissionRow[]>(RECHECK_QUERY, [batch], { prepare: true }),
        deps.deadlineMs,
      );
      if (!result.ok) return { ok: false, error: errorText(result.error) };
      for (const row of result.value) {
        const id = row['permission_id'];
        if (typeof id === 'string' && id.length <= MAX_TEXT) rows.set(id, row);
      }
    }
    const verdicts = subjects.map((subject): RecheckVerdict => {
      const row = rows.get(subject.permissionId);
      if (row === undefined) {
        return {
          ok: false,
          reason: 'no_matching_permission',
          detail: `permission ${JSON.stringify(subject.permissionId)} no longer exists`,
        };
      }
      const verdict = checkPermissionRow(row, subject, deps.keys, deps.verified);
      return verdict.ok ? { ok: true, ...grantTiming(row, queriedAt) } : verdict;
    });
    return { ok: true, verdicts };
  } catch (err) {
    return { ok: false, error: errorText(err) };
  }
}
