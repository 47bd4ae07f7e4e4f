import { isIP } from 'node:net';
import { type Command, InvalidArgumentError } from 'commander';
import type { IssuedCertificate } from '../../pki/certificates.js';
import { spkiFingerprint } from '../../pki/fingerprint.js';
import { type Io, runCommand } from './action.js';
import { usageError } from './errors.js';
import { loadIssuer } from './issuer.js';
import { loadIssuance } from './lazy-pki.js';
import { collect, exitWith, fileStem, nonEmpty, positiveInt } from './options.js';
import { certificatePath, keyPath, writeCertAndKey } from './pki-output.js';
import { addTokenOptions } from './signing-keys.js';
import { formatFields } from './table.js';

interface SanOptions {
  dns?: string[];
  ip?: string[];
  commonName?: string;
}

export interface ServerCertCreateOptions extends SanOptions {
  caCert: string;
  caKey: string;
  caPassphraseEnv?: string;
  caPinEnv?: string;
  pkcs11Module?: string;
  outDir: string;
  name: string;
  validDays: number;
  force?: boolean;
}

export interface ServerCsrOptions extends SanOptions {
  outDir: string;
  name: string;
  force?: boolean;
}

/** `server-cert create`: the gateway's TLS certificate, signed by a CA from `ca create` (or any P-256 CA). */
export async function runServerCertCreate(opts: ServerCertCreateOptions, io: Io): Promise<number> {
  return runCommand('server-cert create', io, async () => {
    const sans = requireSans(opts);
    const ca = await loadIssuer(opts, io);
    let issued: IssuedCertificate;
    try {
      const { createServerCertificate } = await loadIssuance();
      issued = await createServerCertificate({ ca, ...sans, validDays: opts.validDays, ...cn(opts) });
    } finally {
      ca.close();
    }
    const cert = { path: certificatePath(opts.outDir, opts.name), pem: issued.certPem };
    // The gateway reads tls_key_path unencrypted (it has no passphrase setting): keep the file private.
    const key = { path: keyPath(opts.outDir, opts.name), pem: issued.keyPem };
    await writeCertAndKey(cert, key, opts.force === true);
    io.out(
      formatFields({
        certificate: cert.path,
        'private key': `${key.path} (unencrypted, mode 600)`,
        names: [...sans.dnsNames, ...sans.ipAddresses].join(', '),
        'key fingerprint': spkiFingerprint(issued.spkiDer),
      }),
    );
  });
}

/** `server-cert csr`: a key and a PKCS#10 request for an external CA. */
export async function runServerCsr(opts: ServerCsrOptions, io: Io): Promise<number> {
  return runCommand('server-cert csr', io, async () => {
    const sans = requireSans(opts);
    const { createServerCsr } = await loadIssuance();
    const { csrPem, keyPem } = await createServerCsr({ ...sans, ...cn(opts) });
    const csr = {
      path: `${certificatePath(opts.outDir, opts.name).slice(0, -'.pem'.length)}.csr.pem`,
      pem: csrPem,
    };
    const key = { path: keyPath(opts.outDir, opts.name), pem: keyPem };
    await writeCertAndKey(csr, key, opts.force === true);
    io.out(
      formatFields({
        'certificate request': csr.path,
        'private key': `${key.path} (unencrypted, mode 600)`,
        names: [...sans.dnsNames, ...sans.ipAddresses].join(', '),
      }),
    );
  });
}

function requireSans(opts: SanOptions): { dnsNames: string[]; ipAddresses: string[] } {
  const dnsNames = opts.dns ?? [];
  const ipAddresses = opts.ip ?? [];
  if (dnsNames.length + ipAddresses.length === 0) {
    throw usageError('a server certificate needs at least one name: pass --dns NAME and/or --ip ADDRESS');
  }
  return { dnsNames, ipAddresses };
}

function cn(opts: SanOptions): { commonName?: string } {
  return opts.commonName === undefined ? {} : { commonName: opts.commonName };
}

function dnsName(value: string, previous: string[] = []): string[] {
  // Lower-case letters, digits, '-', '.', and a leading '*.' for wildcards; what TLS clients match on.
  if (
    !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(
      value,
    )
  ) {
    throw new InvalidArgumentError(
      `--dns ${JSON.stringify(value)} is not a DNS name (an IP address goes in --ip)`,
    );
  }
  return collect(value, previous);
}

function ipAddress(value: string, previous: string[] = []): string[] {
  if (isIP(value) === 0)
    throw new InvalidArgumentError(`--ip ${JSON.stringify(value)} is not an IPv4 or IPv6 address`);
  return collect(value, previous);
}

function addSanOptions(command: Command): Command {
  return command
    .option('--dns <name>', 'DNS subject alternative name (repeatable)', dnsName)
    .option('--ip <address>', 'IP subject alternative name (repeatable)', ipAddress)
    .option('--common-name <cn>', 'subject common name (default: the first name)', nonEmpty('--common-name'))
    .requiredOption('--out-dir <dir>', 'directory to write into', nonEmpty('--out-dir'))
    .option('--name <name>', 'file name stem', fileStem, 'server')
    .option('--force', 'overwrite existing files');
}

export function registerServerCertCommands(program: Command): void {
  const group = program.command('server-cert').description("the gateway's TLS server certificate");
  const create = addSanOptions(
    group
      .command('create')
      .description(
        'create a server key and certificate signed by a CA (<out-dir>/<name>.pem, <name>-key.pem)',
      )
      .requiredOption('--ca-cert <file>', 'CA certificate (PEM or DER)', nonEmpty('--ca-cert'))
      .requiredOption(
        '--ca-key <file|uri>',
        'CA private key: a PEM file, or a pkcs11: URI of a key in a token',
        nonEmpty('--ca-key'),
      )
      .option('--ca-passphrase-env <var>', 'environment variable holding the CA key passphrase')
      .option('--valid-days <n>', 'validity in days', positiveInt('--valid-days'), 365),
  );
  addTokenOptions(create, { pin: '--ca-pin-env', key: '--ca-key' }).action(exitWith(runServerCertCreate));
  addSanOptions(
    group
      .command('csr')
      .description('create a server key and a certificate signing request (<name>.csr.pem, <name>-key.pem)'),
  ).action(exitWith(runServerCsr));
}
