import { createPrivateKey } from 'node:crypto';
import { join } from 'node:path';
import { type OutputFile, writeNewFiles } from './files.js';

/** How the PKI commands name and write what they create: `<out-dir>/<name>.pem` and `<name>-key.pem`. */

export const CERT_MODE = 0o644;
export const KEY_MODE = 0o600;

export function certificatePath(outDir: string, name: string): string {
  return join(outDir, `${name}.pem`);
}

export function keyPath(outDir: string, name: string): string {
  return join(outDir, `${name}-key.pem`);
}

/** A PKCS#8 PEM, encrypted with AES-256-CBC when a passphrase is given (what generateP256KeyPair does). */
export function protectKeyPem(keyPem: string, passphrase: string | undefined): string {
  if (passphrase === undefined) return keyPem;
  return createPrivateKey(keyPem)
    .export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase })
    .toString();
}

/** Writes a certificate (or CSR) and its key together, all or nothing. */
export async function writeCertAndKey(
  cert: { path: string; pem: string },
  key: { path: string; pem: string },
  force: boolean,
): Promise<void> {
  const files: OutputFile[] = [
    { path: cert.path, content: cert.pem, mode: CERT_MODE },
    { path: key.path, content: key.pem, mode: KEY_MODE },
  ];
  await writeNewFiles(files, force);
}
