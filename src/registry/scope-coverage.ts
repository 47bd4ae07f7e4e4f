/**
 * The one definition of delegation coverage (interop contract), as SQL: a delegation row covers a
 * permission when it belongs to the permission's signing key, names exactly the permission's
 * destination, and its window contains the permission's whole window. For a decision made now, the
 * delegation must also be in force: unrevoked and inside its own window at the database's now().
 *
 * Every query that asks "does a scope cover this permission?" (the gateway's decision and live check, the
 * tools' row status, `permission grant`'s refusal) builds its predicate here, with the column or
 * parameter expressions of the permission it is about.
 */
export interface CoveredPermission {
  /** SQL expressions (columns or parameters) for the permission's fields. */
  readonly signingKeyId: string;
  readonly destination: string;
  readonly notBefore: string;
  readonly notAfter: string;
}

/** The delegation `s` is for the permission's signing key and destination (whatever its window). */
export function scopeForSql(s: string, p: Pick<CoveredPermission, 'signingKeyId' | 'destination'>): string {
  return `${s}.signing_key_id = ${p.signingKeyId} AND ${s}.destination = ${p.destination}`;
}

/** The delegation `s` covers the permission's whole window (whether or not it is in force now). */
export function scopeCoversSql(s: string, p: CoveredPermission): string {
  return `${scopeForSql(s, p)} AND ${s}.not_before <= ${p.notBefore} AND ${p.notAfter} <= ${s}.not_after`;
}

/** The delegation `s` is unrevoked. */
export function scopeUnrevokedSql(s: string): string {
  return `${s}.revoked_at IS NULL`;
}

/** The delegation `s` is in force now: unrevoked and inside its own window on the database clock. */
export function scopeInForceSql(s: string): string {
  return `${scopeUnrevokedSql(s)} AND ${s}.not_before <= now() AND now() < ${s}.not_after`;
}

/** The permission row `p` (a `permission_registry` alias), as the subject of a coverage predicate. */
export function permissionColumns(p: string): CoveredPermission {
  return {
    signingKeyId: `${p}.signing_key_id`,
    destination: `${p}.destination`,
    notBefore: `${p}.not_before`,
    notAfter: `${p}.not_after`,
  };
}
