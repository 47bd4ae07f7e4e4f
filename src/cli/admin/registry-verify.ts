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
 * `registry verify`: judges every row as the gateway would, whatever the time. Rows denied only because
 * they (or their signer or scope) expired, are not valid yet or were revoked are counted, not reported; a
 * row denied for any other reason (bad signature, scope that never covered it, unusable signing key,
 * destination that can never match) is a problem, and any problem makes the exit code 1.
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
          `${JSON.stringify({ permissions, statuses, signingKeys: keys, scopes, problems }, null, 2)}\n`,
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
          're-check every row as the gateway would; exit 1 if any row is denied for a reason other than time or revocation',
        ),
    ),
  ).action(exitWith(runRegistryVerify));
}
