import { canonicalTimestampSql } from './canonical.js';

/**
 * SQL for a key or scope row's state on the database clock, in the same words `permission list` uses,
 * plus its window and revocation as canonical text.
 */
export function windowStatusColumns(alias: string): string {
  return `
    CASE WHEN ${alias}.revoked_at IS NOT NULL THEN 'revoked'
         WHEN now() < ${alias}.not_before THEN 'not-yet-valid'
         WHEN now() >= ${alias}.not_after THEN 'expired'
         ELSE 'active' END AS status,
    ${canonicalTimestampSql(`${alias}.not_before`)} AS not_before,
    ${canonicalTimestampSql(`${alias}.not_after`)} AS not_after,
    ${canonicalTimestampSql(`${alias}.revoked_at`)} AS revoked_at`;
}

export interface WindowStatusRow {
  status: 'revoked' | 'not-yet-valid' | 'expired' | 'active';
  not_before: string;
  not_after: string;
  revoked_at: string | null;
}
