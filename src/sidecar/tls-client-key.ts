import type { SecureContextOptions } from 'node:tls';
import { loadPrivateKey, spkiDerOf } from '../pki/keys.js';
import type { TokenKeyConfig } from './key-config.js';

/**
 * Where the agent's TLS client key comes from, behind one interface: a PEM file (the key is in this
 * process) or a PKCS#11 token (the key never leaves it; today through OpenSSL's engine, see
 * pkcs11/engine-tls-key.ts). A future OpenSSL-provider route is a third implementation, nothing else changes.
 */
export interface TlsClientKeySource {
  /** How messages name it: the file or the URI (never a PIN). */
  readonly description: string;
  /** The public key (SPKI DER), to check that the certificate is this key's. */
  readonly spkiDer: Buffer;
  /** What the operator should know about the key that does not stop the sidecar. */
  readonly warnings: readonly string[];
  /** The tls.createSecureContext options that present the key. */
  readonly contextOptions: Pick<SecureContextOptions, 'key' | 'privateKeyEngine' | 'privateKeyIdentifier'>;
  /** Releases what holding the key needs (a token session). Contexts built from it stop working. */
  close(): void;
}

/** A key file's text (read by the caller) as a key source; throws KeyFileError when it is not a usable key. */
export function fileKeySource(path: string, pem: string, passphrase: string | undefined): TlsClientKeySource {
  const key = loadPrivateKey(pem, passphrase);
  return {
    description: path,
    spkiDer: spkiDerOf(key),
    warnings: [],
    // Decrypted here, so the TLS context needs no passphrase; it never leaves this process.
    contextOptions: { key: key.export({ type: 'pkcs8', format: 'pem' }).toString() },
    close: () => {},
  };
}

/** A token key as a key source. The PKCS#11 code is loaded only here, only for a pkcs11: key. */
export async function tokenKeySource(config: TokenKeyConfig): Promise<TlsClientKeySource> {
  const { openEngineTlsKey } = await import('../pkcs11/engine-tls-key.js');
  return openEngineTlsKey(config);
}
