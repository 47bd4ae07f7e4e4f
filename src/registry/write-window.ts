import type postgres from 'postgres';
import { canonicalTimestampSql } from './canonical.js';
import { RegistryWriteError } from './write-checks.js';

/**
 * A point in time: any timestamptz literal PostgreSQL accepts (canonical `YYYY-MM-DDTHH:MM:SS.ffffffZ`
 * preferred), or an interval relative to the database clock, e.g. `{ fromNow: '-2 days' }`.
 */
export type TimeInput = string | { readonly fromNow: string };

/** A row's validity window as stored, in canonical text (what the signature covers). */
export interface StoredWindow {
  notBefore: string;
  notAfter: string;
}

/**
 * Resolves both ends of a window on the database clock and renders them canonically. Years outside
 * 1–9999 are refused: the canonical form has four year digits and no era, so they cannot be signed.
 */
export async function resolveWindow(
  tx: postgres.TransactionSql,
  notBefore: TimeInput | undefined,
  notAfter: TimeInput | undefined,
  defaultLifetime: string,
): Promise<StoredWindow> {
  const nb = timeParts(notBefore);
  const na = timeParts(notAfter);
  const [row] = await tx.unsafe<{ nb: string | null; na: string | null; ok: boolean | null }[]>(WINDOW_SQL, [
    nb.at,
    nb.offset,
    na.at,
    na.offset,
    defaultLifetime,
  ]);
  if (row === undefined || row.nb === null || row.na === null || row.ok !== true) {
    throw new RegistryWriteError(
      `validity window [${row?.nb ?? String(notBefore)}, ${row?.na ?? String(notAfter)}) is empty, ` +
        `infinite or outside years 1-9999: not_before must be earlier than not_after`,
    );
  }
  return { notBefore: row.nb, notAfter: row.na };
}

// $1/$2: not_before as a literal or an offset from now(); $3/$4 the same for not_after; $5 default lifetime.
// Parameters are typed text and cast in SQL: postgres.js would send a timestamptz-typed parameter through
// a JS Date, silently dropping the microseconds that the signature covers.
const WINDOW_SQL = `
  WITH t AS (
    SELECT coalesce($1::text::timestamptz, now() + coalesce($2::text::interval, interval '0')) AS nb
  ), u AS (
    SELECT nb, coalesce($3::text::timestamptz, now() + $4::text::interval, nb + $5::text::interval) AS na FROM t
  )
  SELECT ${canonicalTimestampSql('nb')} AS nb, ${canonicalTimestampSql('na')} AS na,
    (nb >= '0001-01-01T00:00:00Z' AND na < '10000-01-01T00:00:00Z' AND nb < na) AS ok
  FROM u`;

function timeParts(t: TimeInput | undefined): { at: string | null; offset: string | null } {
  if (t === undefined) return { at: null, offset: null };
  if (typeof t === 'string') return { at: t, offset: null };
  return { at: null, offset: t.fromNow };
}
