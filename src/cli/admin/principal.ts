import type { Command } from 'commander';
import { isPkcs11Uri } from '../../pkcs11/uri.js';
import { spkiFingerprint } from '../../pki/fingerprint.js';
import { generateP256KeyPair } from '../../pki/keys.js';
import { type WindowStatusRow, windowStatusColumns } from '../../registry/window-status.js';
import { registerSigningKey, revokeSigningKey } from '../../registry/writer.js';
import { type Io, runCommand } from './action.js';
import { usageError } from './errors.js';
import { refuseExistingFiles, writeNewFiles } from './files.js';
import { readPublicKeyFile } from './key-files.js';
import {
  addDatabaseUrlOption,
  addJsonOption,
  addWindowOptions,
  exitWith,
  nonEmpty,
  type WindowOptions,
  windowInput,
} from './options.js';
import { passphraseForNewKey } from './passphrase.js';
import { withRegistry } from './registry-session.js';
import { runRevocation } from './revocation.js';
import { addTokenOptions, createTokenSigningKey, keyFlagSecrets, loadSigningKey } from './signing-keys.js';
import { formatFields, printList, shortFingerprint } from './table.js';

export interface CreateKeyOptions {
  out: string;
  publicOut?: string;
  passphraseEnv?: string;
  unencrypted?: boolean;
  pinEnv?: string;
  pkcs11Module?: string;
  force?: boolean;
}

/**
 * `principal create-key`: a P-256 signing key (PKCS#8 PEM, optionally encrypted) and its public key; with
 * `--out pkcs11:…` the key pair is generated inside the token and only the public key is written.
 */
export async function runCreateKey(opts: CreateKeyOptions, io: Io): Promise<number> {
  return runCommand('principal create-key', io, async () => {
    if (isPkcs11Uri(opts.out)) return createKeyInToken(opts, io);
    if (opts.pinEnv !== undefined) throw usageError('--pin-env applies only to --out pkcs11:…');
    const passphrase = await passphraseForNewKey(opts, io);
    const pair = generateP256KeyPair(passphrase === undefined ? {} : { passphrase });
    const publicOut = opts.publicOut ?? defaultPublicPath(opts.out);
    const publicPem = spkiPem(pair.publicKeySpkiDer);
    await writeNewFiles(
      [
        { path: opts.out, content: pair.privateKeyPem, mode: 0o600 },
        { path: publicOut, content: publicPem, mode: 0o644 },
      ],
      opts.force === true,
    );
    io.out(
      formatFields({
        'private key': `${opts.out} (${passphrase === undefined ? 'unencrypted' : 'encrypted'}, mode 600)`,
        'public key': publicOut,
        'key fingerprint': spkiFingerprint(pair.publicKeySpkiDer),
      }),
    );
  });
}

async function createKeyInToken(opts: CreateKeyOptions, io: Io): Promise<void> {
  if (opts.passphraseEnv !== undefined || opts.unencrypted === true) {
    throw usageError(
      '--passphrase-env/--unencrypted are for key files: a token key is protected by the token (its PIN is --pin-env)',
    );
  }
  if (opts.publicOut === undefined) {
    throw usageError('--out pkcs11:… needs --public-out FILE: where to write the new public key');
  }
  const publicOut = opts.publicOut;
  // Checked before the key exists, so that an existing file does not leave an orphan key in the token.
  await refuseExistingFiles([publicOut], opts.force === true);
  const key = await createTokenSigningKey(opts.out, '--out', keyFlagSecrets(opts), io);
  try {
    await writeNewFiles(
      [{ path: publicOut, content: spkiPem(key.signer.spkiDer), mode: 0o644 }],
      opts.force === true,
    );
    io.out(
      formatFields({
        'private key': `${key.description} (in the token: sensitive, not extractable)`,
        'public key': publicOut,
        'key fingerprint': spkiFingerprint(key.signer.spkiDer),
      }),
    );
  } finally {
    key.close();
  }
}

export interface RegisterOptions extends WindowOptions {
  keyId: string;
  publicKey?: string;
  key?: string;
  passphraseEnv?: string;
  pinEnv?: string;
  pkcs11Module?: string;
  replace?: boolean;
  databaseUrl?: string;
}

/** `principal register`: enrols a public key under a key id (or, with --replace, changes an existing one). */
export async function runRegister(opts: RegisterOptions, io: Io): Promise<number> {
  return runCommand('principal register', io, async () => {
    const spki = await publicKeyOf(opts, io);
    await withRegistry(opts.databaseUrl, io, async (sql) => {
      const window = await windowInput(sql, opts);
      const result = await registerSigningKey(sql, {
        keyId: opts.keyId,
        publicKeySpkiDer: spki,
        replace: opts.replace === true,
        ...window,
      });
      io.out(
        formatFields({
          [result.action === 'inserted' ? 'registered' : 'replaced']: opts.keyId,
          'key fingerprint': spkiFingerprint(spki),
          'not before': result.notBefore,
          'not after': result.notAfter,
        }),
      );
      if (result.keyChanged && result.permissionsSigned > 0) {
        io.err(
          `warning: the public key of ${JSON.stringify(opts.keyId)} changed: the ${result.permissionsSigned} ` +
            'permission(s) signed with the old key no longer verify (registry verify lists them); re-grant them\n',
        );
      }
    });
  });
}

async function publicKeyOf(opts: RegisterOptions, io: Io): Promise<Buffer> {
  if ((opts.publicKey === undefined) === (opts.key === undefined)) {
    throw usageError(
      'give exactly one of --public-key FILE (the public key) and --key FILE (its private key)',
    );
  }
  if (opts.publicKey !== undefined) return readPublicKeyFile(opts.publicKey, '--public-key');
  const key = await loadSigningKey(opts.key ?? '', '--key', keyFlagSecrets(opts), io);
  key.close();
  return key.signer.spkiDer;
}

export interface RevokeKeyOptions {
  keyId: string;
  databaseUrl?: string;
}

/** `principal revoke`: every permission the key signed is denied, and its open tunnels are closed. */
export function runRevokeKey(opts: RevokeKeyOptions, io: Io): Promise<number> {
  return runRevocation('principal revoke', opts.databaseUrl, io, {
    kind: 'signing key',
    id: opts.keyId,
    revoke: (sql) => revokeSigningKey(sql, opts.keyId),
    consequence: 'gateways deny everything it signed and close its open tunnels within about a second',
  });
}

export interface ListKeysOptions {
  json?: boolean;
  databaseUrl?: string;
}

export async function runListKeys(opts: ListKeysOptions, io: Io): Promise<number> {
  return runCommand('principal list', io, () =>
    withRegistry(opts.databaseUrl, io, async (sql) => {
      const rows = await sql.unsafe<
        (WindowStatusRow & { key_id: string; algorithm: string; spki: Buffer })[]
      >(
        `SELECT k.key_id, k.algorithm, k.public_key_spki_der AS spki, ${windowStatusColumns('k')}
         FROM principal_signing_keys k ORDER BY k.created_at, k.key_id`,
      );
      const keys = rows.map((r) => ({
        keyId: r.key_id,
        status: r.status,
        algorithm: r.algorithm,
        fingerprint: spkiFingerprint(r.spki),
        notBefore: r.not_before,
        notAfter: r.not_after,
        revokedAt: r.revoked_at,
      }));
      printList(
        io,
        opts.json,
        keys,
        ['KEY_ID', 'STATUS', 'NOT_BEFORE', 'NOT_AFTER', 'REVOKED_AT', 'FINGERPRINT'],
        (k) => [
          k.keyId,
          k.status,
          k.notBefore,
          k.notAfter,
          k.revokedAt ?? '-',
          shortFingerprint(k.fingerprint),
        ],
      );
    }),
  );
}

/** `key.pem` → `key.pub.pem`; any other name gets `.pub.pem` appended. */
function defaultPublicPath(privatePath: string): string {
  return privatePath.endsWith('.pem') ? `${privatePath.slice(0, -4)}.pub.pem` : `${privatePath}.pub.pem`;
}

function spkiPem(der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN PUBLIC KEY-----\n${lines.join('\n')}\n-----END PUBLIC KEY-----\n`;
}

export function registerPrincipalCommands(program: Command): void {
  const group = program
    .command('principal')
    .description("principals' signing keys (who may sign permissions)");
  const createKey = group
    .command('create-key')
    .description('create a P-256 signing key (PKCS#8 PEM) and its public key (<out> and <out>.pub.pem)')
    .requiredOption(
      '--out <file|uri>',
      'private key file to write, or a pkcs11: URI (pkcs11:token=…;object=…) to generate the key in that token',
      nonEmpty('--out'),
    )
    .option(
      '--public-out <file>',
      'public key file to write (default: <out> with .pub.pem; required with a URI)',
    )
    .option('--passphrase-env <var>', 'encrypt the key with the passphrase in this environment variable')
    .option('--unencrypted', 'write the key unencrypted (otherwise a passphrase is asked on the terminal)')
    .option('--force', 'overwrite existing files');
  addTokenOptions(createKey, { pin: '--pin-env', key: '--out' }).action(exitWith(runCreateKey));
  const register = addDatabaseUrlOption(
    addWindowOptions(
      group
        .command('register')
        .description('register a public key under a key id in the registry')
        .requiredOption('--key-id <id>', 'key id the permissions will name', nonEmpty('--key-id'))
        .option('--public-key <file>', 'the public key (PEM or DER SubjectPublicKeyInfo)')
        .option(
          '--key <file|uri>',
          'or the private key (a PEM file, or a pkcs11: URI of a token key), whose public half is registered',
        )
        .option('--passphrase-env <var>', 'environment variable holding the --key passphrase')
        .option('--replace', 'change the public key and window of an existing (unrevoked) key id'),
      '365 days',
    ),
  );
  addTokenOptions(register).action(exitWith(runRegister));
  addDatabaseUrlOption(
    group
      .command('revoke')
      .description('revoke a signing key: everything it signed is denied and its open tunnels close')
      .requiredOption('--key-id <id>', 'key id to revoke', nonEmpty('--key-id')),
  ).action(exitWith(runRevokeKey));
  addDatabaseUrlOption(
    addJsonOption(group.command('list').description('list signing keys and their state now')),
  ).action(exitWith(runListKeys));
}
