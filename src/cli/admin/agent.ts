import type { Command } from 'commander';
import type { IssuedCertificate } from '../../pki/certificates.js';
import { spkiFingerprint } from '../../pki/fingerprint.js';
import { identityExtensionValue } from '../../pki/identity-extension.js';
import { type Io, runCommand } from './action.js';
import { usageError } from './errors.js';
import { identityOid, type OidOptions } from './identity-oid.js';
import { loadIssuer } from './key-files.js';
import { loadIssuance } from './lazy-pki.js';
import { exitWith, fileStem, nonEmpty, positiveInt } from './options.js';
import { certificatePath, keyPath, writeCertAndKey } from './pki-output.js';
import { formatFields } from './table.js';

export interface AgentCreateOptions extends OidOptions {
  identity: string;
  outDir: string;
  name?: string;
  validDays: number;
  caCert?: string;
  caKey?: string;
  caPassphraseEnv?: string;
  force?: boolean;
}

/**
 * `agent create`: a P-256 key and a client certificate carrying the identity extension. Self-signed unless
 * a CA is given: the gateway trusts no CA, only the registry's binding of identity to the exact key.
 */
export async function runAgentCreate(opts: AgentCreateOptions, io: Io): Promise<number> {
  return runCommand('agent create', io, async () => {
    checkIdentity(opts.identity);
    const oid = await identityOid(opts);
    const issuer = await optionalIssuer(opts, io);
    const { createAgentCertificate } = await loadIssuance();
    const issued = await createAgentCertificate({
      identity: opts.identity,
      extensionOid: oid.dotted,
      validDays: opts.validDays,
      ...(issuer === undefined ? {} : { issuer }),
    });
    const name = opts.name ?? defaultName(opts.identity);
    const cert = { path: certificatePath(opts.outDir, name), pem: issued.certPem };
    const key = { path: keyPath(opts.outDir, name), pem: issued.keyPem };
    await writeCertAndKey(cert, key, opts.force === true);
    io.out(
      formatFields({
        identity: opts.identity,
        'spki fingerprint': spkiFingerprint(issued.spkiDer),
        'identity oid': oid.dotted,
        certificate: `${cert.path}${issuer === undefined ? ' (self-signed)' : ''}`,
        'private key': `${key.path} (unencrypted, mode 600)`,
      }),
    );
  });
}

/** The identity must survive the extension (DER UTF8String) and the newline-delimited signed bytes. */
function checkIdentity(identity: string): void {
  try {
    identityExtensionValue(identity);
  } catch (err) {
    throw usageError(`--identity: ${(err as Error).message}`);
  }
}

async function optionalIssuer(opts: AgentCreateOptions, io: Io): Promise<IssuedCertificate | undefined> {
  if (opts.caCert === undefined && opts.caKey === undefined) return undefined;
  if (opts.caCert === undefined || opts.caKey === undefined) {
    throw usageError(
      '--ca-cert and --ca-key go together: give both to sign with a CA, or neither to self-sign',
    );
  }
  return loadIssuer({ caCert: opts.caCert, caKey: opts.caKey, caPassphraseEnv: opts.caPassphraseEnv }, io);
}

/** The identity as the file stem when it is a safe one, else "agent". */
function defaultName(identity: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(identity) ? identity : 'agent';
}

export function registerAgentCommands(program: Command): void {
  const group = program.command('agent').description('agent client certificates');
  group
    .command('create')
    .description(
      'create an agent P-256 key and a certificate with the identity extension (<out-dir>/<name>.pem, <name>-key.pem)',
    )
    .requiredOption('--identity <id>', 'agent identity (case-sensitive, used verbatim)')
    .requiredOption('--out-dir <dir>', 'directory to write into', nonEmpty('--out-dir'))
    .option('--name <name>', 'file name stem (default: the identity, when it is file-name safe)', fileStem)
    .option('--oid <oid>', 'identity extension OID (default: 1.3.6.1.4.1.57264.1.1)')
    .option('--config <file>', "take the OID from this gateway config's policy.client_ext_oid")
    .option('--valid-days <n>', 'validity in days', positiveInt('--valid-days'), 365)
    .option('--ca-cert <file>', 'sign with this CA instead of self-signing (with --ca-key)')
    .option('--ca-key <file>', 'the CA private key (PEM)')
    .option('--ca-passphrase-env <var>', 'environment variable holding the CA key passphrase')
    .option('--force', 'overwrite existing files')
    .action(exitWith(runAgentCreate));
}
