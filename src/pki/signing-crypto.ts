// What lets @peculiar/x509 sign with a key it cannot import: a P256Signer (a key file, or a PKCS#11 token
// whose key never leaves it) behind the WebCrypto-shaped provider the library takes.
import { webcrypto } from 'node:crypto';
import type { P256Signer } from './signer.js';

const P256 = { name: 'ECDSA', namedCurve: 'P-256' };

/**
 * The crypto provider and key handle @peculiar/x509 signs with: Node's WebCrypto for everything but
 * `sign`, which goes to `signer` (a key file or a token). The library hands `sign` the TBS bytes and
 * expects P1363 `r || s` back, which is what P256Signer returns; it then DER-encodes the signature itself.
 */
export function signingCrypto(signer: P256Signer): { crypto: webcrypto.Crypto; key: webcrypto.CryptoKey } {
  const key = {
    algorithm: P256,
    type: 'private',
    extractable: false,
    usages: ['sign'],
  } as unknown as webcrypto.CryptoKey;
  const subtle = webcrypto.subtle;
  const sign = async (
    algorithm: unknown,
    used: unknown,
    data: ArrayBuffer | ArrayBufferView,
  ): Promise<ArrayBuffer> => {
    const hash = (algorithm as { hash?: unknown } | null)?.hash;
    if (used !== key || (hash !== 'SHA-256' && (hash as { name?: unknown })?.name !== 'SHA-256')) {
      throw new Error('certificate signing supports only this signer with ECDSA P-256 / SHA-256');
    }
    const bytes =
      data instanceof ArrayBuffer
        ? new Uint8Array(data)
        : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const signature = await signer.signP1363(bytes);
    return new Uint8Array(signature).buffer;
  };
  const wrappedSubtle = new Proxy(subtle, {
    get(target, property) {
      if (property === 'sign') return sign;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  const crypto = new Proxy(webcrypto, {
    get(target, property) {
      if (property === 'subtle') return wrappedSubtle;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { crypto, key };
}
