import { createPublicKey, type KeyObject } from 'node:crypto';
import { readClientCertificate } from '../../identity/client-certificate.js';
import { assertP256, KeyFileError, loadPrivateKey } from '../../pki/keys.js';
import type { Io } from './action.js';
import { usageError } from './errors.js';
import { readInputFile } from './files.js';
import { passphraseForExistingKey } from './passphrase.js';
import { isPem, pemBlocks } from './pem.js';

const ENCRYPTED_PEM = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type:\s*4,ENCRYPTED/m;

/**
 * Loads an ECDSA P-256 private key file (principal and CA keys) named by `flag`, asking for its passphrase
 * (the variable named by `passphraseFlag`, or a prompt) only when the file is encrypted. Errors name the
 * flag and the file.
 */
export async function loadP256KeyFile(
  path: string,
  flag: string,
  passphraseEnv: string | undefined,
  passphraseFlag: string,
  io: Io,
): Promise<KeyObject> {
  const text = (await readInputFile(path, flag)).toString('utf8');
  const passphrase = ENCRYPTED_PEM.test(text)
    ? await passphraseForExistingKey(passphraseEnv, passphraseFlag, path, io)
    : undefined;
  try {
    const key = loadPrivateKey(text, passphrase);
    assertP256(key, `${flag} ${JSON.stringify(path)}`);
    return key;
  } catch (err) {
    if (!(err instanceof KeyFileError)) throw err;
    throw usageError(
      err.message.startsWith(flag) ? err.message : `${flag} ${JSON.stringify(path)}: ${err.message}`,
    );
  }
}

/** The exact DER of the first certificate in a PEM or DER file. */
export async function readCertificateDer(path: string, flag: string): Promise<Buffer> {
  const bytes = await readInputFile(path, flag);
  if (!isPem(bytes)) return bytes;
  const cert = pemBlocks(bytes.toString('utf8')).find((b) => b.label === 'CERTIFICATE');
  if (cert === undefined) {
    throw usageError(`${flag} ${JSON.stringify(path)} holds no '-----BEGIN CERTIFICATE-----' block`);
  }
  return cert.der;
}

export interface CertificateFacts {
  readonly der: Buffer;
  /** The exact subjectPublicKeyInfo bytes, sliced by the same reader the gateway uses on handshakes. */
  readonly spki: Buffer;
  /** The identity extension's value as the gateway would read it, or null. */
  readonly identity: string | null;
  readonly identityProblem: 'missing' | 'malformed' | null;
}

export async function readCertificateFile(
  path: string,
  flag: string,
  identityOidContent: Buffer,
): Promise<CertificateFacts> {
  const der = await readCertificateDer(path, flag);
  try {
    const read = readClientCertificate(der, identityOidContent);
    return {
      der,
      spki: Buffer.from(read.spki),
      identity: read.identity,
      identityProblem: read.identityProblem,
    };
  } catch (err) {
    throw usageError(`${flag} ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}

/**
 * A public key file (PEM `PUBLIC KEY` or DER SubjectPublicKeyInfo) as its exact DER bytes. The bytes are
 * checked to parse as a public key, never re-encoded.
 */
export async function readPublicKeyFile(path: string, flag: string): Promise<Buffer> {
  const bytes = await readInputFile(path, flag);
  let der = bytes;
  if (isPem(bytes)) {
    const blocks = pemBlocks(bytes.toString('utf8'));
    const block = blocks.find((b) => b.label === 'PUBLIC KEY');
    if (block === undefined) {
      const labels = blocks.map((b) => b.label).join(', ') || 'nothing';
      const hint = labels.includes('CERTIFICATE') ? ' (for a certificate use --agent-cert)' : '';
      throw usageError(
        `${flag} ${JSON.stringify(path)}: expected a '-----BEGIN PUBLIC KEY-----' block, found ${labels}${hint}`,
      );
    }
    der = block.der;
  }
  try {
    createPublicKey({ key: der, format: 'der', type: 'spki' });
  } catch {
    throw usageError(`${flag} ${JSON.stringify(path)} is not a DER or PEM SubjectPublicKeyInfo public key`);
  }
  return der;
}
