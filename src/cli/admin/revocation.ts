import type postgres from 'postgres';
import { type RevocableKind, revokedAt } from '../../registry/revocation.js';
import { type Io, runCommand } from './action.js';
import { failure } from './errors.js';
import { withRegistry } from './registry-session.js';

export interface Revocation {
  readonly kind: RevocableKind;
  readonly id: string;
  /** Sets revoked_at if it is not set; true when it did. */
  readonly revoke: (sql: postgres.Sql) => Promise<boolean>;
  /** What the revocation means, for the operator. */
  readonly consequence: string;
}

/** A whole `… revoke` command: open the registry, revoke, report. */
export function runRevocation(
  command: string,
  databaseUrl: string | undefined,
  io: Io,
  revocation: Revocation,
): Promise<number> {
  return runCommand(command, io, () =>
    withRegistry(databaseUrl, io, (sql) => revokeAndReport(sql, io, revocation)),
  );
}

/**
 * Revocation is idempotent for the operator: revoking a row that is already revoked says since when and
 * succeeds (a re-run script must not fail); revoking a row that does not exist fails (a typo must).
 */
export async function revokeAndReport(
  sql: postgres.Sql,
  io: Io,
  { kind, id, revoke, consequence }: Revocation,
): Promise<void> {
  const name = `${kind} ${JSON.stringify(id)}`;
  if (await revoke(sql)) {
    io.out(`revoked ${name}: ${consequence}\n`);
    return;
  }
  const at = await revokedAt(sql, kind, id);
  if (at === undefined) throw failure(`there is no ${name}`);
  io.out(`${name} was already revoked at ${at}\n`);
}
