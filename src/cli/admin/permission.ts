import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import type postgres from 'postgres';
import { DESTINATION_FORMS, normalizeDestination } from '../../destination/normalize.js';
import { identityProblem } from '../../identity/identity-rule.js';
import { spkiFingerprint } from '../../pki/fingerprint.js';
import { listPermissionStatuses, type PermissionRowStatus } from '../../policy/row-status.js';
import { insertSignedPermission, revokePermission } from '../../registry/writer.js';
import { type Io, runCommand } from './action.js';
import { usageError } from './errors.js';
import { identityOid, type OidOptions } from './identity-oid.js';
import { readCertificateFile, readPublicKeyFile } from './key-files.js';
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
import { runRevocation } from './revocation.js';
import { addTokenOptions, keyFlagSecrets, loadSigningKey } from './signing-keys.js';
import { formatFields, printList, shortFingerprint } from './table.js';

export interface PermissionGrantOptions extends WindowOptions, OidOptions {
  keyId: string;
  key: string;
  passphraseEnv?: string;
  pinEnv?: string;
  pkcs11Module?: string;
  identity?: string;
  agentCert?: string;
  agentPublicKey?: string;
  destination: string;
  permissionId?: string;
  databaseUrl?: string;
}

/**
 * `permission grant`: signs the canonical bytes of a new permission row with the principal's key and
 * inserts it, refusing (in the same transaction) what the gateway would deny: a revoked or expired signer,
 * or a window its delegation scope does not cover.
 */
export async function runPermissionGrant(opts: PermissionGrantOptions, io: Io): Promise<number> {
  return runCommand('permission grant', io, async () => {
    const destination = normalizeDestination(opts.destination);
    const subject = await subjectOf(opts);
    const key = await loadSigningKey(opts.key, '--key', keyFlagSecrets(opts), io);
    const permissionId = opts.permissionId ?? `perm-${randomUUID()}`;
    try {
      await withRegistry(opts.databaseUrl, io, async (sql) => {
        const window = await windowInput(sql, opts);
        await checkKeyMatches(sql, opts.keyId, key.signer.spkiDer, key.description);
        const stored = await insertSignedPermission(sql, {
          permissionId,
          signingKeyId: opts.keyId,
          subjectIdentity: subject.identity,
          subjectSpkiDer: subject.spki,
          destination,
          ...window,
          enforceSignerAndScope: true,
          sign: (bytes) => key.signDer(bytes),
        });
        io.out(
          formatFields({
            'permission id': stored.permissionId,
            identity: subject.identity,
            'agent key': spkiFingerprint(subject.spki),
            destination: stored.destination,
            'not before': stored.notBefore,
            'not after': stored.notAfter,
            'signed by': opts.keyId,
          }),
        );
        for (const note of stored.notes) io.err(`note: ${note}\n`);
      });
    } finally {
      key.close();
    }
  });
}

/**
 * Names the mismatch when --key is not the key registered under --key-id (the writer would only say that
 * the signature does not verify). The writer still checks the signature inside its transaction.
 */
async function checkKeyMatches(
  sql: postgres.Sql,
  keyId: string,
  keySpki: Buffer,
  key: string,
): Promise<void> {
  const [row] = await sql<{ spki: Buffer }[]>`
    SELECT public_key_spki_der AS spki FROM principal_signing_keys WHERE key_id = ${keyId}`;
  if (row !== undefined && !row.spki.equals(keySpki)) {
    throw usageError(
      `--key ${JSON.stringify(key)} (${spkiFingerprint(keySpki)}) is not the key registered as ` +
        `${JSON.stringify(keyId)} (${spkiFingerprint(row.spki)}): pass that key's private key (file or pkcs11: URI)`,
    );
  }
}

/** The agent's identity and exact key, from its certificate (as the gateway reads it) or a public key file. */
async function subjectOf(opts: PermissionGrantOptions): Promise<{ identity: string; spki: Buffer }> {
  if ((opts.agentCert === undefined) === (opts.agentPublicKey === undefined)) {
    throw usageError('give exactly one of --agent-cert FILE and --agent-public-key FILE');
  }
  if (opts.agentPublicKey !== undefined) {
    if (opts.identity === undefined) {
      throw usageError('--agent-public-key needs --identity (a public key carries no identity)');
    }
    if (opts.oid !== undefined || opts.config !== undefined) {
      throw usageError('--oid/--config only apply with --agent-cert');
    }
    return {
      identity: checkIdentity(opts.identity),
      spki: await readPublicKeyFile(opts.agentPublicKey, '--agent-public-key'),
    };
  }
  const oid = await identityOid(opts);
  const cert = await readCertificateFile(opts.agentCert ?? '', '--agent-cert', oid.content);
  if (cert.identity === null) {
    if (opts.identity === undefined) {
      throw usageError(
        `--agent-cert ${JSON.stringify(opts.agentCert)} has ${cert.identityProblem === 'malformed' ? 'a malformed' : 'no'} ` +
          `identity extension ${oid.dotted}: the gateway would deny it; create it with agent create (or pass --oid)`,
      );
    }
    throw usageError(
      `--agent-cert ${JSON.stringify(opts.agentCert)} carries no readable identity (${oid.dotted}), so the gateway ` +
        `would never see ${JSON.stringify(opts.identity)}: issue a certificate with that identity`,
    );
  }
  if (opts.identity !== undefined && opts.identity !== cert.identity) {
    throw usageError(
      `--identity ${JSON.stringify(opts.identity)} differs from the certificate's identity ${JSON.stringify(cert.identity)}`,
    );
  }
  return { identity: checkIdentity(cert.identity), spki: cert.spki };
}

function checkIdentity(identity: string): string {
  const problem = identityProblem(identity);
  if (problem !== undefined) throw usageError(`--identity: ${problem}`);
  return identity;
}

export interface PermissionRevokeOptions {
  permissionId: string;
  databaseUrl?: string;
}

export function runPermissionRevoke(opts: PermissionRevokeOptions, io: Io): Promise<number> {
  return runRevocation('permission revoke', opts.databaseUrl, io, {
    kind: 'permission',
    id: opts.permissionId,
    revoke: (sql) => revokePermission(sql, opts.permissionId),
    consequence: 'gateways deny it and close its open tunnels within about a second',
  });
}

export interface PermissionListOptions {
  permissionId?: string;
  identity?: string;
  destination?: string;
  keyId?: string;
  json?: boolean;
  databaseUrl?: string;
}

/** `permission list`: every row with its status as the gateway would judge it now. */
export async function runPermissionList(opts: PermissionListOptions, io: Io): Promise<number> {
  return runCommand('permission list', io, async () => {
    if (opts.destination !== undefined) normalizeDestination(opts.destination);
    await withRegistry(opts.databaseUrl, io, async (sql) => {
      const rows = await listPermissionStatuses(sql, {
        ...(opts.permissionId === undefined ? {} : { permissionId: opts.permissionId }),
        ...(opts.identity === undefined ? {} : { subjectIdentity: opts.identity }),
        ...(opts.destination === undefined ? {} : { destination: opts.destination }),
        ...(opts.keyId === undefined ? {} : { signingKeyId: opts.keyId }),
      });
      printList(
        io,
        opts.json,
        rows.map(permissionJson),
        [
          'PERMISSION_ID',
          'STATUS',
          'IDENTITY',
          'DESTINATION',
          'SIGNED_BY',
          'NOT_BEFORE',
          'NOT_AFTER',
          'AGENT_KEY',
          'DETAIL',
        ],
        (r) => [
          r.permissionId,
          r.problem !== null && r.problem !== r.status ? `${r.status}+${r.problem}` : r.status,
          r.identity,
          r.destination,
          r.signingKeyId,
          r.notBefore ?? '?',
          r.notAfter ?? '?',
          r.agentKey === null ? '?' : shortFingerprint(r.agentKey),
          r.detail ?? '',
        ],
      );
    });
  });
}

/** One row for --json and the table: the status now, plus the row's lasting problem when that is something else. */
export function permissionJson(row: PermissionRowStatus) {
  return {
    permissionId: row.permissionId,
    status: row.status,
    problem: row.problem?.kind ?? null,
    detail: row.problem?.detail ?? row.detail ?? null,
    denyReason: row.denyReason ?? null,
    identity: row.subjectIdentity,
    agentKey: row.subjectSpki === null ? null : spkiFingerprint(row.subjectSpki),
    destination: row.destination,
    signingKeyId: row.signingKeyId,
    notBefore: row.notBefore,
    notAfter: row.notAfter,
    revokedAt: row.revokedAt,
  };
}

export function registerPermissionCommands(program: Command): void {
  const group = program
    .command('permission')
    .description('signed permissions: agent × key × destination × window');
  const grant = addDatabaseUrlOption(
    addWindowOptions(
      group
        .command('grant')
        .description(
          "sign a permission with a principal's key and insert it (refused when the key's scope does not cover it)",
        )
        .requiredOption('--key-id <id>', 'signing key id', nonEmpty('--key-id'))
        .requiredOption(
          '--key <file|uri>',
          "the signing key's private key: a PEM file, or a pkcs11: URI of a key in a token (signs there)",
          nonEmpty('--key'),
        )
        .option('--passphrase-env <var>', 'environment variable holding the --key passphrase')
        .option('--agent-cert <file>', "the agent's certificate: identity and exact key are read from it")
        .option('--agent-public-key <file>', "or the agent's public key (PEM or DER), with --identity")
        .option('--identity <id>', 'agent identity (checked against --agent-cert when both are given)')
        .option('--oid <oid>', 'identity extension OID for --agent-cert (default: 1.3.6.1.4.1.57264.1.1)')
        .option('--config <file>', "take the OID from this gateway config's policy.client_ext_oid")
        .requiredOption('--destination <dest>', DESTINATION_FORMS)
        .option(
          '--permission-id <id>',
          'id of the new row (default: perm-<random UUID>)',
          nonEmpty('--permission-id'),
        ),
      '30 days',
    ),
  );
  addTokenOptions(grant).action(exitWith(runPermissionGrant));
  addDatabaseUrlOption(
    group
      .command('revoke')
      .description('revoke a permission: new CONNECTs are denied and its open tunnels close')
      .requiredOption('--permission-id <id>', 'permission to revoke', nonEmpty('--permission-id')),
  ).action(exitWith(runPermissionRevoke));
  addDatabaseUrlOption(
    addJsonOption(
      group
        .command('list')
        .description(
          'list permissions with their status as the gateway would judge it now: active, expired, not-yet-valid, ' +
            'revoked, bad-signature, signer-inactive, signer-invalid, outside-scope, scope-inactive, unmatchable',
        )
        .option('--permission-id <id>', 'only this permission')
        .option('--identity <id>', 'only this agent identity')
        .option('--destination <dest>', 'only this destination')
        .option('--key-id <id>', 'only permissions signed by this key'),
    ),
  ).action(exitWith(runPermissionList));
}
