import { readClientCertificate } from '../../identity/client-certificate.js';
import type { CertificateIssuer } from '../../pki/certificates.js';
import type { Io } from './action.js';
import { usageError } from './errors.js';
import { readCertificateDer } from './key-files.js';
import { loadSigningKey } from './signing-keys.js';

/** A CA certificate and its key (a file or a pkcs11: URI), as the issuer of new certificates; close it after. */
export interface LoadedIssuer extends CertificateIssuer {
  close(): void;
}

/** Loads `--ca-cert` and `--ca-key` and checks that they belong together. */
export async function loadIssuer(
  opts: { caCert: string; caKey: string; caPassphraseEnv?: string; caPinEnv?: string; pkcs11Module?: string },
  io: Io,
): Promise<LoadedIssuer> {
  const certDer = await readCertificateDer(opts.caCert, '--ca-cert');
  let spkiDer: Buffer;
  try {
    spkiDer = Buffer.from(readClientCertificate(certDer, Buffer.alloc(0)).spki);
  } catch (err) {
    throw usageError(`--ca-cert ${JSON.stringify(opts.caCert)}: ${(err as Error).message}`);
  }
  const key = await loadSigningKey(
    opts.caKey,
    '--ca-key',
    {
      passphraseEnv: opts.caPassphraseEnv,
      passphraseFlag: '--ca-passphrase-env',
      pinEnv: opts.caPinEnv,
      pinFlag: '--ca-pin-env',
      pkcs11Module: opts.pkcs11Module,
    },
    io,
  );
  if (!key.signer.spkiDer.equals(spkiDer)) {
    key.close();
    throw usageError(
      `--ca-key ${JSON.stringify(key.description)} is not the key of --ca-cert ${JSON.stringify(opts.caCert)}: pass the CA's own key`,
    );
  }
  return { certDer, spkiDer, signer: key.signer, close: () => key.close() };
}
