import type { Command } from 'commander';
import { spkiFingerprint } from '../../pki/fingerprint.js';
import { type Io, runCommand } from './action.js';
import { loadIssuance } from './lazy-pki.js';
import { exitWith, fileStem, nonEmpty, positiveInt } from './options.js';
import { passphraseForNewKey } from './passphrase.js';
import { certificatePath, keyPath, protectKeyPem, writeCertAndKey } from './pki-output.js';
import { formatFields } from './table.js';

export interface CaCreateOptions {
  outDir: string;
  name: string;
  commonName: string;
  validDays: number;
  passphraseEnv?: string;
  unencrypted?: boolean;
  force?: boolean;
}

/** `ca create`: a CA for the gateway's server certificate (agents' certificates need none). */
export async function runCaCreate(opts: CaCreateOptions, io: Io): Promise<number> {
  return runCommand('ca create', io, async () => {
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

export function registerCaCommands(program: Command): void {
  const ca = program.command('ca').description('certificate authority for the gateway server certificate');
  ca.command('create')
    .description('create a CA certificate and its P-256 key (<out-dir>/<name>.pem, <name>-key.pem)')
    .requiredOption('--out-dir <dir>', 'directory to write into', nonEmpty('--out-dir'))
    .option('--name <name>', 'file name stem', fileStem, 'ca')
    .option('--common-name <cn>', 'subject common name', nonEmpty('--common-name'), 'agent-gateway CA')
    .option('--valid-days <n>', 'validity in days', positiveInt('--valid-days'), 3650)
    .option('--passphrase-env <var>', 'encrypt the key with the passphrase in this environment variable')
    .option('--unencrypted', 'write the key unencrypted (otherwise a passphrase is asked on the terminal)')
    .option('--force', 'overwrite existing files')
    .action(exitWith(runCaCreate));
}
