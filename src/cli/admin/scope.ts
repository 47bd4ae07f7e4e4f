import { type Command, InvalidArgumentError } from 'commander';
import { DESTINATION_FORMS, normalizeDestination } from '../../destination/normalize.js';
import { type WindowStatusRow, windowStatusColumns } from '../../registry/window-status.js';
import { grantScope, revokeScope, revokeScopesFor } from '../../registry/writer.js';
import { type Io, runCommand } from './action.js';
import { failure, usageError } from './errors.js';
import {
  addDatabaseUrlOption,
  addJsonOption,
  addWindowOptions,
  exitWith,
  nonEmpty,
  type WindowOptions,
  windowInput,
} from './options.js';
import { withRegistry } from './registry-session.js';
import { revokeAndReport } from './revocation.js';
import { formatFields, printList } from './table.js';

export interface ScopeGrantOptions extends WindowOptions {
  keyId: string;
  destination: string;
  databaseUrl?: string;
}

const ACTION_WORDS = {
  inserted: 'granted (new scope row)',
  extended: 'extended (existing scope row now covers the union of both windows)',
  unchanged: 'already covered (nothing changed)',
} as const;

/** `scope grant`: lets a signing key delegate a destination; never shortens what it already covers. */
export async function runScopeGrant(opts: ScopeGrantOptions, io: Io): Promise<number> {
  return runCommand('scope grant', io, async () => {
    const destination = normalizeDestination(opts.destination);
    await withRegistry(opts.databaseUrl, io, async (sql) => {
      const window = await windowInput(sql, opts);
      const result = await grantScope(sql, { signingKeyId: opts.keyId, destination, ...window });
      io.out(
        formatFields({
          scope: `#${result.id} ${ACTION_WORDS[result.action]}`,
          'key id': opts.keyId,
          destination: result.destination,
          'not before': result.notBefore,
          'not after': result.notAfter,
        }),
      );
    });
  });
}

export interface ScopeRevokeOptions {
  id?: string;
  keyId?: string;
  destination?: string;
  databaseUrl?: string;
}

/** `scope revoke`: one row by id, or every live row of a key for a destination. */
export async function runScopeRevoke(opts: ScopeRevokeOptions, io: Io): Promise<number> {
  return runCommand('scope revoke', io, async () => {
    const byId = opts.id !== undefined;
    const byPair = opts.keyId !== undefined || opts.destination !== undefined;
    if (byId === byPair || (byPair && (opts.keyId === undefined || opts.destination === undefined))) {
      throw usageError('give either --id N, or both --key-id ID and --destination DEST');
    }
    const destination = opts.destination === undefined ? undefined : normalizeDestination(opts.destination);
    await withRegistry(opts.databaseUrl, io, async (sql) => {
      if (opts.id !== undefined) {
        const id = opts.id;
        const consequence =
          'the permissions it covered are denied, and gateways close their open tunnels within about a second';
        await revokeAndReport(sql, io, {
          kind: 'scope',
          id,
          revoke: (tx) => revokeScope(tx, id),
          consequence,
        });
        return;
      }
      const ids = await revokeScopesFor(sql, opts.keyId ?? '', destination ?? '');
      if (ids.length === 0) {
        throw failure(
          `signing key ${JSON.stringify(opts.keyId)} holds no unrevoked scope for ${destination}`,
        );
      }
      io.out(`revoked scope ${ids.map((id) => `#${id}`).join(', ')} (${opts.keyId} → ${destination})\n`);
    });
  });
}

export interface ScopeListOptions {
  keyId?: string;
  destination?: string;
  json?: boolean;
  databaseUrl?: string;
}

export async function runScopeList(opts: ScopeListOptions, io: Io): Promise<number> {
  return runCommand('scope list', io, async () => {
    const destination = opts.destination === undefined ? null : normalizeDestination(opts.destination);
    await withRegistry(opts.databaseUrl, io, async (sql) => {
      const rows = await sql.unsafe<
        (WindowStatusRow & { id: string; key_id: string; destination: string })[]
      >(
        `SELECT s.id::text AS id, s.signing_key_id AS key_id, s.destination, ${windowStatusColumns('s')}
         FROM principal_key_permissions s
         WHERE ($1::text IS NULL OR s.signing_key_id = $1) AND ($2::text IS NULL OR s.destination = $2)
         ORDER BY s.signing_key_id, s.destination, s.id`,
        [opts.keyId ?? null, destination],
      );
      const scopes = rows.map((r) => ({
        id: r.id,
        keyId: r.key_id,
        destination: r.destination,
        status: r.status,
        notBefore: r.not_before,
        notAfter: r.not_after,
        revokedAt: r.revoked_at,
      }));
      printList(
        io,
        opts.json,
        scopes,
        ['ID', 'KEY_ID', 'DESTINATION', 'STATUS', 'NOT_BEFORE', 'NOT_AFTER', 'REVOKED_AT'],
        (s) => [s.id, s.keyId, s.destination, s.status, s.notBefore, s.notAfter, s.revokedAt ?? '-'],
      );
    });
  });
}

function scopeId(value: string): string {
  if (!/^[1-9][0-9]{0,17}$/.test(value)) {
    throw new InvalidArgumentError(`--id ${JSON.stringify(value)} is not a scope id (a positive number)`);
  }
  return value;
}

export function registerScopeCommands(program: Command): void {
  const group = program
    .command('scope')
    .description('delegation scopes: which destinations a signing key may grant, and when');
  addDatabaseUrlOption(
    addWindowOptions(
      group
        .command('grant')
        .description(
          'let a signing key grant a destination; re-granting extends an overlapping scope, never shortens it',
        )
        .requiredOption('--key-id <id>', 'signing key id', nonEmpty('--key-id'))
        .requiredOption('--destination <dest>', DESTINATION_FORMS),
      '365 days',
    ),
  ).action(exitWith(runScopeGrant));
  addDatabaseUrlOption(
    group
      .command('revoke')
      .description('revoke a scope row by id, or all live scope rows of a key for a destination')
      .option('--id <n>', 'scope row id (from scope list)', scopeId)
      .option('--key-id <id>', 'signing key id (with --destination)', nonEmpty('--key-id'))
      .option('--destination <dest>', 'destination (with --key-id)'),
  ).action(exitWith(runScopeRevoke));
  addDatabaseUrlOption(
    addJsonOption(
      group
        .command('list')
        .description('list scope rows and their state now')
        .option('--key-id <id>', 'only this signing key', nonEmpty('--key-id'))
        .option('--destination <dest>', 'only this destination'),
    ),
  ).action(exitWith(runScopeList));
}
