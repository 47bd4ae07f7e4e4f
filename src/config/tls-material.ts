import { createHash, createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { describeFsError, describePath } from './files.js';

/**
 * The gateway's TLS certificate and key, read and checked as a pair. `check-config` (through the config
 * loader) and the gateway's start both go through here, so a file `check-config` passes is one the TLS
 * listener accepts, and a file it would refuse is named with the fix instead of OpenSSL's bare
 * `key values mismatch` or `no start line`.
 */
export interface TlsFiles {
  readonly tls_cert_path: string;
  readonly tls_key_path: string;
}

export interface TlsMaterial {
  /** PEM, as the listener takes it (a chain: the leaf first). */
  readonly certPem: Buffer;
  /** PEM, unencrypted. Secret. */
  readonly keyPem: Buffer;
  /** SHA-256 of the leaf certificate's DER (lower-case hex), to name the certificate in logs. */
  readonly leafSha256: string;
  /** The leaf's notAfter, ISO-8601. */
  readonly leafNotAfter: string;
}

export type TlsMaterialResult = { ok: true; material: TlsMaterial } | { ok: false; problems: string[] };

/** The config keys the messages name (the agents' listener's, or the admin listener's). */
interface KeyNames {
  readonly cert: string;
  readonly key: string;
}

function keyNames(table: string): KeyNames {
  return { cert: `${table}.tls_cert_path`, key: `${table}.tls_key_path` };
}
const PRIVATE_KEY_BLOCK = /-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/;
const CERTIFICATE_BLOCK = /-----BEGIN (?:TRUSTED |X509 )?CERTIFICATE-----/;
const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type:\s*4,ENCRYPTED/;

export async function readTlsMaterial(files: TlsFiles, table = 'server'): Promise<TlsMaterialResult> {
  const k = keyNames(table);
  const [certPem, keyPem] = await Promise.all([
    readRegularFile(k.cert, files.tls_cert_path),
    readRegularFile(k.key, files.tls_key_path),
  ]);
  const problems = [certPem, keyPem].filter((r): r is string => typeof r === 'string');
  if (typeof certPem === 'string' || typeof keyPem === 'string') return { ok: false, problems };
  const cert = describePath(files.tls_cert_path);
  const key = describePath(files.tls_key_path);

  const certLooksLikeKey = !CERTIFICATE_BLOCK.test(certPem.toString('latin1')) && looksLikeKey(certPem);
  const keyLooksLikeCert = !looksLikeKey(keyPem) && CERTIFICATE_BLOCK.test(keyPem.toString('latin1'));
  if (certLooksLikeKey && keyLooksLikeCert) {
    return {
      ok: false,
      problems: [
        `${k.cert} and ${k.key} are swapped: ${cert} holds a private key and ${key} a certificate; ` +
          `set tls_cert_path to ${JSON.stringify(files.tls_key_path)} and tls_key_path to ${JSON.stringify(files.tls_cert_path)}`,
      ],
    };
  }

  const leaf = parseCertificate(certPem, cert, certLooksLikeKey, k);
  const privateKey = parsePrivateKey(keyPem, key, keyLooksLikeCert, k);
  for (const r of [leaf, privateKey]) if (typeof r === 'string') problems.push(r);
  if (typeof leaf === 'string' || typeof privateKey === 'string') return { ok: false, problems };

  if (!leaf.checkPrivateKey(privateKey)) {
    return {
      ok: false,
      problems: [
        `${k.key}: ${key} is not the private key of the certificate in ${cert} (their public keys differ): ` +
          'point tls_key_path at the key written together with that certificate (`agent-gateway server-cert ' +
          'create` writes <name>.pem and <name>-key.pem), or issue a new certificate for this key',
      ],
    };
  }
  // Whatever else OpenSSL would refuse when the listener builds its context (the same call underneath),
  // refused here, with both files named.
  try {
    createSecureContext({ cert: certPem, key: keyPem });
  } catch (err) {
    return {
      ok: false,
      problems: [
        `${k.cert}, ${k.key}: OpenSSL refuses the certificate ${cert} with the key ${key}: ` +
          `${(err as Error).message}; issue a new certificate and key with \`agent-gateway server-cert create\``,
      ],
    };
  }
  return {
    ok: true,
    material: {
      certPem,
      keyPem,
      leafSha256: createHash('sha256').update(leaf.raw).digest('hex'),
      // Parsed from validTo, not validToDate: the benchmarks also start the gateway on Node 20 (no validToDate).
      leafNotAfter: new Date(leaf.validTo).toISOString(),
    },
  };
}

/** readTlsMaterial for callers that cannot go on without the files (the gateway's start). */
export async function loadTlsMaterial(files: TlsFiles, table = 'server'): Promise<TlsMaterial> {
  const result = await readTlsMaterial(files, table);
  if (result.ok) return result.material;
  throw new TlsMaterialError(result.problems);
}

export class TlsMaterialError extends Error {
  override name = 'TlsMaterialError';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`unusable TLS certificate or key:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/** The file's bytes, or the problem (a string) naming the key, the path and what is wrong. */
async function readRegularFile(key: string, path: string): Promise<Buffer | string> {
  try {
    const info = await stat(path);
    if (!info.isFile()) return `${key}: ${describePath(path)} is not a regular file`;
    return await readFile(path);
  } catch (error) {
    return `${key}: cannot read ${describePath(path)}: ${describeFsError(error)}`;
  }
}

function looksLikeKey(pem: Buffer): boolean {
  return PRIVATE_KEY_BLOCK.test(pem.toString('latin1'));
}

/** The leaf (the first certificate of the chain), or the problem. */
function parseCertificate(
  pem: Buffer,
  shown: string,
  holdsKey: boolean,
  k: KeyNames,
): X509Certificate | string {
  if (holdsKey) {
    return (
      `${k.cert}: ${shown} holds a private key, not a certificate: point tls_cert_path at the server ` +
      'certificate (PEM, -----BEGIN CERTIFICATE-----; `agent-gateway server-cert create` writes it as <name>.pem)'
    );
  }
  try {
    return new X509Certificate(pem);
  } catch {
    return (
      `${k.cert}: ${shown} is not a PEM certificate (no -----BEGIN CERTIFICATE----- block that parses): ` +
      'point tls_cert_path at the server certificate (`agent-gateway server-cert create` writes it as <name>.pem)'
    );
  }
}

function parsePrivateKey(
  pem: Buffer,
  shown: string,
  holdsCertificate: boolean,
  k: KeyNames,
): KeyObject | string {
  if (holdsCertificate) {
    return (
      `${k.key}: ${shown} holds a certificate, not a private key: point tls_key_path at the certificate's ` +
      'private key (PEM, -----BEGIN PRIVATE KEY-----; `agent-gateway server-cert create` writes it as <name>-key.pem)'
    );
  }
  if (ENCRYPTED_KEY.test(pem.toString('latin1'))) {
    return (
      `${k.key}: ${shown} is encrypted, and the gateway has no passphrase setting: write it unencrypted ` +
      '(`openssl pkey -in KEY -out KEY.plain`, then keep that file mode 600) and point tls_key_path at it'
    );
  }
  try {
    // An empty passphrase: a key encrypted in a form the check above missed fails here instead of
    // OpenSSL prompting on the terminal.
    return createPrivateKey({ key: pem, passphrase: '' });
  } catch {
    return (
      `${k.key}: ${shown} is not a PEM private key (no -----BEGIN PRIVATE KEY----- block that parses): ` +
      'point tls_key_path at the private key of the server certificate (<name>-key.pem)'
    );
  }
}
