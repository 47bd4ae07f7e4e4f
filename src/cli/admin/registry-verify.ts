import type { Command } from 'commander';
import type postgres from 'postgres';
import { DestinationError, normalizeDestination } from '../../destination/normalize.js';
import { SIGNING_ALGORITHM, SigningKeyCache } from '../../policy/row-check.js';
import { forEachPermissionStatus } from '../../policy/row-status.js';
import { type Io, runCommand } from './action.js';
import { EXIT_FAILURE } from './errors.js';
import { addDatabaseUrlOption, addJsonOption, exitWith } from './options.js';
import { withRegistry } from './registry-session.js';

export interface RegistryVerifyOptions {
  json?: boolean;
  databaseUrl?: string;
}

interface Problem {
  table: 'permission_registry' | 'principal_signing_keys' | 'principal_key_permissions';
  id: string;
  problem: string;
  detail: string;
}

/**
 * What `registry verify` cannot see, printed with every report. The registry is the trust root for signing
 * keys, scopes and revocations (README, "Trust model"): a row written with SQL by someone who can write the
 * database is indistinguishable from one the operator tools wrote, so verify must not be read as an audit
 * of who changed what.
 */
export const VERIFY_BLIND_SPOTS: readonly string[] = [
  'a signing key, a scope or a permission signed by such a key, INSERTed with SQL: it is as valid as one the CLI wrote',
  'revoked_at set back to NULL on a permission, scope or signing key: the row is simply active again',
  'a scope row INSERTed or widened with SQL: permissions inside it become valid',
];

/**
 * `registry verify`: judges every row as the gateway would, whatever the time. Rows denied only because
 * they (or their signer or scope) expired, are not valid yet or were revoked are counted, not reported; a
 * row denied for any other reason (bad signature, scope that never covered it, unusable signing key,
 * destination that can never match) is a problem, and any problem makes the exit code 1. It finds rows
 * that cannot work as stored (e.g. a signed field edited without re-signing), not rows that work but
 * should not exist: see VERIFY_BLIND_SPOTS, which the report repeats.
 */
export async function runRegistryVerify(opts: RegistryVerifyOptions, io: Io): Promise<number> {
  return runCommand('registry verify', io, () =>
    withRegistry(opts.databaseUrl, io, async (sql) => {
      const problems: Problem[] = [];
      const statuses: Record<string, number> = {};
      let permissions = 0;
      await forEachPermissionStatus(sql, {}, (row) => {
        permissions += 1;
        statuses[row.status] = (statuses[row.status] ?? 0) + 1;
        if (row.problem !== undefined) {
          problems.push({
            table: 'permission_registry',
            id: row.permissionId,
            problem: row.problem.kind,
            detail: row.problem.detail,
          });
        }
      });
      const keys = await checkSigningKeys(sql, problems);
      const scopes = await checkScopes(sql, problems);
      if (opts.json === true) {
        io.out(
          `${JSON.stringify(
            { permissions, statuses, signingKeys: keys, scopes, problems, notDetectable: VERIFY_BLIND_SPOTS },
            null,
            2,
          )}\n`,
        );
      } else {
        for (const p of problems)
          io.out(`problem: ${p.table} ${JSON.stringify(p.id)}: ${p.problem}: ${p.detail}\n`);
        const byStatus = Object.entries(statuses)
          .map(([status, n]) => `${n} ${status}`)
          .join(', ');
        io.out(
          `checked ${permissions} permission(s)${permissions > 0 ? ` (${byStatus})` : ''}, ${keys} signing key(s), ` +
            `${scopes} scope row(s): ${problems.length === 0 ? 'no problems' : `${problems.length} problem(s)`}\n`,
        );
        io.out(
          'not detectable here: the database is the trust root for keys, scopes and revocations, so rows ' +
            "written with SQL by anyone who can write it look like the tools' own:\n" +
            VERIFY_BLIND_SPOTS.map((line) => `  - ${line}\n`).join(''),
        );
      }
      return problems.length === 0 ? 0 : EXIT_FAILURE;
    }),
  );
}

/** A key the gateway cannot use denies everything it signed, whatever the time. */
async function checkSigningKeys(sql: postgres.Sql, problems: Problem[]): Promise<number> {
  const keys = new SigningKeyCache(64);
  let count = 0;
  for await (const rows of sql<{ key_id: string; algorithm: string; spki: Buffer }[]>`
    SELECT key_id, algorithm, public_key_spki_der AS spki FROM principal_signing_keys ORDER BY key_id`.cursor(
    500,
  )) {
    for (const row of rows) {
      count += 1;
      const detail =
        row.algorithm !== SIGNING_ALGORITHM
          ? `algorithm ${JSON.stringify(row.algorithm)} is not ${SIGNING_ALGORITHM}`
          : keys.get(row.spki) === null
            ? 'public key is not an EC P-256 SubjectPublicKeyInfo'
            : undefined;
      if (detail !== undefined) {
        problems.push({ table: 'principal_signing_keys', id: row.key_id, problem: 'signer-invalid', detail });
      }
    }
  }
  return count;
}

/** A scope whose destination is not in normalized form can never cover a permission. */
async function checkScopes(sql: postgres.Sql, problems: Problem[]): Promise<number> {
  let count = 0;
  for await (const rows of sql<{ id: string; destination: string }[]>`
    SELECT id::text AS id, destination FROM principal_key_permissions ORDER BY id`.cursor(500)) {
    for (const row of rows) {
      count += 1;
      let normalized: string | undefined;
      try {
        normalized = normalizeDestination(row.destination);
      } catch (err) {
        if (!(err instanceof DestinationError)) throw err;
      }
      if (normalized !== row.destination) {
        problems.push({
          table: 'principal_key_permissions',
          id: row.id,
          problem: 'unmatchable',
          detail: `destination ${JSON.stringify(row.destination)} is not in normalized form${normalized === undefined ? '' : ` (${normalized})`}: it can never cover a permission`,
        });
      }
    }
  }
  return count;
}

export function registerRegistryCommands(program: Command): void {
  const group = program.command('registry').description('the registry database as a whole');
  addDatabaseUrlOption(
    addJsonOption(
      group
        .command('verify')
        .description(
          're-check every row as the gateway would; exit 1 if any row is denied for a reason other than time or ' +
            'revocation (rows written or un-revoked with SQL by someone who can write the database are not detectable)',
        ),
    ),
  ).action(exitWith(runRegistryVerify));
}
