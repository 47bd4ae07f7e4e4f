import type { Command } from 'commander';
import { isPkcs11Uri } from '../../pkcs11/uri.js';
import { spkiFingerprint } from '../../pki/fingerprint.js';
import { type Io, runCommand } from './action.js';
import { usageError } from './errors.js';
import { loadIssuance } from './lazy-pki.js';
import { exitWith, fileStem, nonEmpty, positiveInt } from './options.js';
import { passphraseForNewKey } from './passphrase.js';
import { certificatePath, keyPath, protectKeyPem, writeCertAndKey } from './pki-output.js';
import { addTokenOptions, keyFlagSecrets } from './signing-keys.js';
import { formatFields } from './table.js';
import { certifyNewTokenKey } from './token-certificate.js';

export interface CaCreateOptions {
  outDir: string;
  name: string;
  commonName: string;
  validDays: number;
  passphraseEnv?: string;
  unencrypted?: boolean;
  /** A pkcs11: URI: generate the CA key in that token; the token signs the CA certificate. */
  key?: string;
  pinEnv?: string;
  pkcs11Module?: string;
  force?: boolean;
}

/** `ca create`: a CA for the gateway's server certificate (agents' certificates need none). */
export async function runCaCreate(opts: CaCreateOptions, io: Io): Promise<number> {
  return runCommand('ca create', io, async () => {
    if (opts.key !== undefined) return createInToken({ ...opts, key: opts.key }, io);
    if (opts.pinEnv !== undefined) throw usageError('--pin-env applies only with --key pkcs11:…');
    const passphrase = await passphraseForNewKey(opts, io);
    const { createCa } = await loadIssuance();
    const ca = await createCa({ commonName: opts.commonName, validDays: opts.validDays });
    const cert = { path: certificatePath(opts.outDir, opts.name), pem: ca.certPem };
    const key = { path: keyPath(opts.outDir, opts.name), pem: protectKeyPem(ca.keyPem, passphrase) };
    await writeCertAndKey(cert, key, opts.force === true);
    io.out(
      formatFields({
        certificate: cert.path,
        'private key': `${key.path}${passphrase === undefined ? ' (unencrypted)' : ' (encrypted)'}`,
        'key fingerprint': spkiFingerprint(ca.spkiDer),
      }),
    );
  });
}

async function createInToken(opts: CaCreateOptions & { key: string }, io: Io): Promise<void> {
  if (!isPkcs11Uri(opts.key)) {
    throw usageError(`--key ${JSON.stringify(opts.key)} is not a pkcs11: URI (pkcs11:token=…;object=…)`);
  }
  if (opts.passphraseEnv !== undefined || opts.unencrypted === true) {
    throw usageError(
      '--passphrase-env/--unencrypted are for key files: a token key is protected by the token',
    );
  }
  const { certifyCaKey } = await loadIssuance();
  const certPath = certificatePath(opts.outDir, opts.name);
  const { issued, keyDescription } = await certifyNewTokenKey(
    opts.key,
    { certPath, force: opts.force === true, secrets: keyFlagSecrets(opts) },
    io,
    (key) => certifyCaKey({ commonName: opts.commonName, validDays: opts.validDays, key }),
  );
  io.out(
    formatFields({
      certificate: certPath,
      'private key': keyDescription,
      'key fingerprint': spkiFingerprint(issued.spkiDer),
    }),
  );
}

export function registerCaCommands(program: Command): void {
  const ca = program.command('ca').description('certificate authority for the gateway server certificate');
  const create = ca
    .command('create')
    .description('create a CA certificate and its P-256 key (<out-dir>/<name>.pem, <name>-key.pem)')
    .requiredOption('--out-dir <dir>', 'directory to write into', nonEmpty('--out-dir'))
    .option('--name <name>', 'file name stem', fileStem, 'ca')
    .option('--common-name <cn>', 'subject common name', nonEmpty('--common-name'), 'agent-gateway CA')
    .option('--valid-days <n>', 'validity in days', positiveInt('--valid-days'), 3650)
    .option('--passphrase-env <var>', 'encrypt the key with the passphrase in this environment variable')
    .option('--unencrypted', 'write the key unencrypted (otherwise a passphrase is asked on the terminal)')
    .option(
      '--key <uri>',
      'generate the CA key inside this PKCS#11 token object (pkcs11:token=…;object=…) instead of <name>-key.pem',
      nonEmpty('--key'),
    )
    .option('--force', 'overwrite existing files');
  addTokenOptions(create).action(exitWith(runCaCreate));
}
