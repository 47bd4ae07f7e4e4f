// ECDSA P-256 key generation and loading. Every key in agent-gateway (TLS server, agents, signing
// principals) is P-256, because the registry only knows `ecdsa_p256_sha256` and the Rust gateway's
// certificates use it too.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { p256Problem } from '../registry/signing-key.js';

export interface KeyPairPem {
  /** PKCS#8 PEM; `ENCRYPTED PRIVATE KEY` when a passphrase was given. */
  privateKeyPem: string;
  /** The public key as SubjectPublicKeyInfo DER: the exact bytes a certificate carries. */
  publicKeySpkiDer: Buffer;
}

/** A key file or PEM string that cannot be used; the message says what is wrong and what to do. */
export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

export function generateP256KeyPair(opts: { passphrase?: string } = {}): KeyPairPem {
  const { passphrase } = opts;
  if (passphrase !== undefined && passphrase.length === 0) {
    // An empty passphrase would produce a file that looks protected but is not.
    throw new KeyFileError('passphrase must not be empty: omit it for an unencrypted key or give a real one');
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateKeyPem =
    passphrase === undefined
      ? privateKey.export({ type: 'pkcs8', format: 'pem' })
      : privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase });
  return {
    privateKeyPem: privateKeyPem.toString(),
    publicKeySpkiDer: publicKey.export({ type: 'spki', format: 'der' }),
  };
}

// PEM armour: the label tells us whether the block is a key at all and whether it is encrypted, so
// we can say so before OpenSSL answers with an opaque "DECODER routines::unsupported".
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/**
 * Parses a private key PEM (PKCS#8, encrypted PKCS#8, or SEC1 `EC PRIVATE KEY`). When the text holds
 * several PEM blocks (a key concatenated with a certificate), the first private key block is used.
 */
export function loadPrivateKey(pem: string, passphrase?: string): KeyObject {
  const blocks = [...pem.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1] ?? '', text: m[0] }));
  if (blocks.length === 0) {
    throw new KeyFileError(
      "not a PEM private key: no '-----BEGIN ... PRIVATE KEY-----' block found; pass a PKCS#8 PEM key file",
    );
  }
  const keyBlock = blocks.find((b) => b.label.endsWith('PRIVATE KEY'));
  if (keyBlock === undefined) {
    const labels = blocks.map((b) => b.label).join(', ');
    throw new KeyFileError(
      `not a PEM private key: found only ${labels}; pass the private key file, not a certificate or public key`,
    );
  }
  const encrypted =
    keyBlock.label === 'ENCRYPTED PRIVATE KEY' || /^Proc-Type:\s*4,ENCRYPTED/m.test(keyBlock.text);
  const hasPassphrase = passphrase !== undefined && passphrase.length > 0;
  if (encrypted && !hasPassphrase) {
    throw new KeyFileError('private key is encrypted but no passphrase was given; supply its passphrase');
  }
  try {
    return createPrivateKey({
      key: keyBlock.text,
      format: 'pem',
      ...(encrypted ? { passphrase } : {}),
    });
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (encrypted) {
      throw new KeyFileError(
        'private key could not be decrypted: wrong passphrase (or a corrupt file); check the passphrase',
        { cause: err },
      );
    }
    throw new KeyFileError(
      `private key PEM could not be parsed (${String(code ?? 'unknown error')}); the file is corrupt or not a supported key format`,
      { cause: err },
    );
  }
}

/** Throws unless `key` is an EC key on P-256; `what` names the key in the message ("server key"). */
export function assertP256(key: KeyObject, what: string): void {
  const problem = p256Problem(key);
  if (problem !== undefined) throw new KeyFileError(`${what} ${problem}; generate a P-256 key`);
}

/** The SubjectPublicKeyInfo DER of a private or public key (what certificates and the registry hold). */
export function spkiDerOf(key: KeyObject): Buffer {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  if (publicKey.type !== 'public') {
    throw new KeyFileError(`cannot take the SPKI of a ${key.type} key; pass an asymmetric key`);
  }
  return publicKey.export({ type: 'spki', format: 'der' });
}
