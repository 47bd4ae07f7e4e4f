// The sidecar's TLS client key inside a PKCS#11 token, through OpenSSL's engine interface.
//
// Node's TLS cannot call back into JavaScript to sign the handshake, so the private-key operation must
// happen inside OpenSSL. Node accepts `privateKeyEngine`/`privateKeyIdentifier` for that, and Debian's
// `libengine-pkcs11-openssl` (libp11) is the engine. Measured here on Node 24 with SoftHSM2: 1.84 ms per
// full mutual-TLS handshake against 1.74 ms with a key file (300 each, client and server in one
// process). The OpenSSL 3 provider route (pkcs11/tpm2 providers via an OpenSSL config) failed with
// "missing private key" in Node; when Node can use a provider key, only this file changes: the sidecar
// sees a key source with `contextOptions`, not an engine.
//
// The PIN never goes to the engine. libp11 prints the identifier it was given to stderr when it cannot
// load a key, so a `pin-value=` in it would leak. Instead this process logs in through pkcs11js and keeps
// that session open: PKCS#11 login state belongs to the application, and the engine, pointed at the same
// module file (PKCS11_MODULE_PATH), shares it and finds the private key without a PIN. The key is checked
// (found, P-256, signs, matches its public key) through pkcs11js first, so the engine is only asked for a
// key that is there. Consequence: the session must stay open while the key is used (close() ends it),
// and the module is never finalized in this process.
import { existsSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Pkcs11Error } from './errors.js';
import { openTokenKey, protectionWarnings } from './token-key.js';
import { formatKeyUri, parseKeyUri } from './uri.js';

export interface EngineTlsKey {
  /** The URI as configured (canonical form), for messages. */
  readonly description: string;
  /** SPKI DER of the token key, for the check against the certificate. */
  readonly spkiDer: Buffer;
  /** Things to tell the operator that do not stop the sidecar (a key the token may reveal). */
  readonly warnings: readonly string[];
  /** What tls.createSecureContext needs to present the key. */
  readonly contextOptions: { readonly privateKeyEngine: string; readonly privateKeyIdentifier: string };
  /** Ends the session that holds the login; contexts built from this key stop working after it. */
  close(): void;
}

export async function openEngineTlsKey(opts: {
  readonly uri: string;
  readonly modulePath: string;
  readonly pin: string;
  readonly enginePath: string;
}): Promise<EngineTlsKey> {
  if (!existsSync(opts.enginePath)) {
    throw new Pkcs11Error(
      'PKCS11_ENGINE_UNAVAILABLE',
      `the OpenSSL PKCS#11 engine ${JSON.stringify(opts.enginePath)} is missing, and TLS needs it to use the ` +
        `token key ${opts.uri}: install Debian's libengine-pkcs11-openssl, or pass --pkcs11-engine PATH`,
    );
  }
  const key = await openTokenKey({ uri: opts.uri, modulePath: opts.modulePath, pin: async () => opts.pin });
  key.module.keepForProcess();
  // The engine reads both when it loads, which happens when a secure context is created from these options.
  process.env['PKCS11_MODULE_PATH'] = key.module.path;
  const file = basename(opts.enginePath);
  let engine = opts.enginePath;
  if (file === 'pkcs11.so' || file === 'libpkcs11.so') {
    // By id from its directory: given a path, OpenSSL first tries it as an id and libp11 prints
    // "bad engine id" before Node loads it by path.
    process.env['OPENSSL_ENGINES'] = dirname(opts.enginePath);
    engine = 'pkcs11';
  }
  return {
    description: formatKeyUri(parseKeyUri(opts.uri)),
    spkiDer: key.spkiDer,
    warnings: protectionWarnings(key),
    contextOptions: { privateKeyEngine: engine, privateKeyIdentifier: `${key.resolvedUri};type=private` },
    close: () => key.close(),
  };
}
