import type { CertifiedKey } from '../../pki/certificates.js';
import type { P256Signer } from '../../pki/signer.js';
import type { Io } from './action.js';
import { refuseExistingFiles, writeNewFiles } from './files.js';
import { CERT_MODE } from './pki-output.js';
import { createTokenSigningKey, type KeySecrets } from './signing-keys.js';

/**
 * `agent create --key pkcs11:…` and `ca create --key pkcs11:…`: generate the key pair in the token,
 * certify it (`certify` may have the token sign), and write only the certificate; there is no key file.
 */
export async function certifyNewTokenKey(
  uri: string,
  opts: { certPath: string; force: boolean; secrets: KeySecrets },
  io: Io,
  certify: (key: P256Signer) => Promise<CertifiedKey>,
): Promise<{ issued: CertifiedKey; keyDescription: string }> {
  // Checked before the key exists: an existing certificate must not leave an orphan key in the token.
  await refuseExistingFiles([opts.certPath], opts.force);
  const key = await createTokenSigningKey(uri, '--key', opts.secrets, io);
  try {
    const issued = await certify(key.signer);
    await writeNewFiles([{ path: opts.certPath, content: issued.certPem, mode: CERT_MODE }], opts.force);
    return { issued, keyDescription: `${key.description} (in the token: sensitive, not extractable)` };
  } catch (error) {
    io.err(`note: the new key ${key.description} stays in the token; certify it again or delete it\n`);
    throw error;
  } finally {
    key.close();
  }
}
