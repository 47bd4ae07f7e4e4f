import type { Command } from 'commander';
import { isPkcs11Uri } from '../../pkcs11/uri.js';
import type { CertifiedKey } from '../../pki/certificates.js';
import { spkiFingerprint } from '../../pki/fingerprint.js';
import { identityExtensionValue } from '../../pki/identity-extension.js';
import { type Io, runCommand } from './action.js';
import { usageError } from './errors.js';
import { identityOid, type OidOptions } from './identity-oid.js';
import { type LoadedIssuer, loadIssuer } from './issuer.js';
import { loadIssuance } from './lazy-pki.js';
import { exitWith, fileStem, nonEmpty, positiveInt } from './options.js';
import { certificatePath, keyPath, writeCertAndKey } from './pki-output.js';
import { addTokenOptions, keyFlagSecrets } from './signing-keys.js';
import { formatFields } from './table.js';
import { certifyNewTokenKey } from './token-certificate.js';

export interface AgentCreateOptions extends OidOptions {
  identity: string;
  outDir: string;
  name?: string;
  validDays: number;
  /** A pkcs11: URI: generate the agent key in that token instead of a key file. */
  key?: string;
  pinEnv?: string;
  caCert?: string;
  caKey?: string;
  caPassphraseEnv?: string;
  caPinEnv?: string;
  pkcs11Module?: string;
  force?: boolean;
}

/**
 * `agent create`: a P-256 key and a client certificate carrying the identity extension. Self-signed unless
 * a CA is given: the gateway trusts no CA, only the registry's binding of identity to the exact key. With
 * `--key pkcs11:…` the key is generated inside the token and only the certificate is written; a
 * self-signed certificate is then signed by the token.
 */
export async function runAgentCreate(opts: AgentCreateOptions, io: Io): Promise<number> {
  return runCommand('agent create', io, async () => {
    checkIdentity(opts.identity);
    if (opts.key !== undefined && !isPkcs11Uri(opts.key)) {
      throw usageError(
        `--key ${JSON.stringify(opts.key)} is not a pkcs11: URI: without --key the key is written to ` +
          '<out-dir>/<name>-key.pem; with it, give the token object to create (pkcs11:token=…;object=…)',
      );
    }
    if (opts.pinEnv !== undefined && opts.key === undefined) {
      throw usageError('--pin-env applies only with --key pkcs11:…');
    }
    const oid = await identityOid(opts);
    const name = opts.name ?? defaultName(opts.identity);
    const certPath = certificatePath(opts.outDir, name);
    const issuer = await optionalIssuer(opts, io);
    try {
      if (opts.key !== undefined) {
        await createInToken({ ...opts, key: opts.key }, { certPath, oid: oid.dotted, issuer }, io);
        return;
      }
      const { createAgentCertificate } = await loadIssuance();
      const issued = await createAgentCertificate({
        identity: opts.identity,
        extensionOid: oid.dotted,
        validDays: opts.validDays,
        ...(issuer === undefined ? {} : { issuer }),
      });
      const key = { path: keyPath(opts.outDir, name), pem: issued.keyPem };
      await writeCertAndKey({ path: certPath, pem: issued.certPem }, key, opts.force === true);
      report(io, opts.identity, issued, oid.dotted, certPath, issuer, `${key.path} (unencrypted, mode 600)`);
    } finally {
      issuer?.close();
    }
  });
}

async function createInToken(
  opts: AgentCreateOptions & { key: string },
  out: { certPath: string; oid: string; issuer: LoadedIssuer | undefined },
  io: Io,
): Promise<void> {
  const { certifyAgentKey } = await loadIssuance();
  const { issued, keyDescription } = await certifyNewTokenKey(
    opts.key,
    { certPath: out.certPath, force: opts.force === true, secrets: keyFlagSecrets(opts) },
    io,
    (key) =>
      certifyAgentKey({
        identity: opts.identity,
        extensionOid: out.oid,
        validDays: opts.validDays,
        key,
        ...(out.issuer === undefined ? {} : { issuer: out.issuer }),
      }),
  );
  report(io, opts.identity, issued, out.oid, out.certPath, out.issuer, keyDescription);
}

function report(
  io: Io,
  identity: string,
  issued: CertifiedKey,
  oid: string,
  certPath: string,
  issuer: LoadedIssuer | undefined,
  privateKey: string,
): void {
  io.out(
    formatFields({
      identity,
      'spki fingerprint': spkiFingerprint(issued.spkiDer),
      'identity oid': oid,
      certificate: `${certPath}${issuer === undefined ? ' (self-signed)' : ''}`,
      'private key': privateKey,
    }),
  );
}

/** The identity must survive the extension (DER UTF8String) and the newline-delimited signed bytes. */
function checkIdentity(identity: string): void {
  try {
    identityExtensionValue(identity);
  } catch (err) {
    throw usageError(`--identity: ${(err as Error).message}`);
  }
}

async function optionalIssuer(opts: AgentCreateOptions, io: Io): Promise<LoadedIssuer | undefined> {
  if (opts.caCert === undefined && opts.caKey === undefined) return undefined;
  if (opts.caCert === undefined || opts.caKey === undefined) {
    throw usageError(
      '--ca-cert and --ca-key go together: give both to sign with a CA, or neither to self-sign',
    );
  }
  return loadIssuer(
    {
      caCert: opts.caCert,
      caKey: opts.caKey,
      ...(opts.caPassphraseEnv === undefined ? {} : { caPassphraseEnv: opts.caPassphraseEnv }),
      ...(opts.caPinEnv === undefined ? {} : { caPinEnv: opts.caPinEnv }),
      ...(opts.pkcs11Module === undefined ? {} : { pkcs11Module: opts.pkcs11Module }),
    },
    io,
  );
}

/** The identity as the file stem when it is a safe one, else "agent". */
function defaultName(identity: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(identity) ? identity : 'agent';
}

export function registerAgentCommands(program: Command): void {
  const group = program.command('agent').description('agent client certificates');
  const create = group
    .command('create')
    .description(
      'create an agent P-256 key and a certificate with the identity extension (<out-dir>/<name>.pem, <name>-key.pem)',
    )
    .requiredOption('--identity <id>', 'agent identity (case-sensitive, used verbatim)')
    .requiredOption('--out-dir <dir>', 'directory to write into', nonEmpty('--out-dir'))
    .option('--name <name>', 'file name stem (default: the identity, when it is file-name safe)', fileStem)
    .option(
      '--key <uri>',
      'generate the key inside this PKCS#11 token object (pkcs11:token=…;object=…) instead of <name>-key.pem',
      nonEmpty('--key'),
    )
    .option('--oid <oid>', 'identity extension OID (default: 1.3.6.1.4.1.57264.1.1)')
    .option('--config <file>', "take the OID from this gateway config's policy.client_ext_oid")
    .option('--valid-days <n>', 'validity in days', positiveInt('--valid-days'), 365)
    .option('--ca-cert <file>', 'sign with this CA instead of self-signing (with --ca-key)')
    .option('--ca-key <file|uri>', 'the CA private key: a PEM file, or a pkcs11: URI of a key in a token')
    .option('--ca-passphrase-env <var>', 'environment variable holding the CA key passphrase')
    .option('--force', 'overwrite existing files');
  addTokenOptions(addTokenOptions(create), { pin: '--ca-pin-env', key: '--ca-key' }).action(
    exitWith(runAgentCreate),
  );
}
