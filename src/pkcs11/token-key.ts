// A P-256 signing key inside a PKCS#11 token, used through a logged-in session: the private key never
// leaves the token, only digests go in and signatures come out.
//
// Signing mechanism: CKM_ECDSA over a SHA-256 digest computed here, not CKM_ECDSA_SHA256. CKM_ECDSA is
// the base EC mechanism every EC-capable token implements (smart cards and TPMs through tpm2-pkcs11
// included), while the combined hash-and-sign mechanisms are optional; it is also what OpenSSL's PKCS#11
// engine uses for TLS, so one mechanism check covers both uses. Hashing on the host changes nothing about
// what is signed: ECDSA signs the SHA-256 digest either way, and the result verifies like
// `openssl dgst -sha256 -sign`. The token returns `r || s` (P1363); the registry's DER comes from
// pki/ecdsa-signature.ts, and every signature is verified with node:crypto before it is returned.
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import type * as Pkcs11js from 'pkcs11js';
import type { P256Signer } from '../pki/signer.js';
import { Pkcs11Error, tokenFailure } from './errors.js';
import { openModule, type Pkcs11Module } from './module.js';
import { findKeyPair, type KeyPairHandles } from './objects.js';
import { closeSession, describeToken, login, openSession, selectToken, type Token } from './token.js';
import { formatKeyUri, type Pkcs11KeyRef, parseKeyUri } from './uri.js';

export interface TokenKeyOptions {
  /** The key's URI as the operator wrote it. */
  readonly uri: string;
  readonly modulePath: string;
  /** The user PIN, asked only once the token is found (so a prompt can name it). */
  readonly pin: (token: Token) => Promise<string>;
}

export interface TokenKey extends P256Signer {
  /** The exact key: the token's label and serial and the object's label and id, resolved. */
  readonly resolvedUri: string;
  readonly token: Token;
  readonly module: Pkcs11Module;
  /** The token will not reveal the key (CKA_SENSITIVE, not CKA_EXTRACTABLE); false for some imported keys. */
  readonly neverRevealed: boolean;
  /** Close the session (a token logs the process out when its last session closes); release the module. */
  close(): void;
}

const P1363_BYTES = 64;

/** Why a usable key still deserves attention: the token would hand out its value (a key made elsewhere). */
export function protectionWarnings(key: TokenKey): string[] {
  if (key.neverRevealed) return [];
  return [
    `the token key ${key.resolvedUri} is not CKA_SENSITIVE or is CKA_EXTRACTABLE: the token may reveal it, so ` +
      'it is not a hardware-held key; generate a new key in the token (principal create-key / agent create --key)',
  ];
}

/** Opens an existing key pair; proves with one signature that the private key matches its public key. */
export async function openTokenKey(opts: TokenKeyOptions): Promise<TokenKey> {
  const ref = parseKeyUri(opts.uri);
  const uri = formatKeyUri(ref);
  return withSession(opts, ref, uri, false, (context) => {
    return findKeyPair(context.module, context.session, selectObject(ref), uri);
  });
}

export interface SessionContext {
  readonly module: Pkcs11Module;
  readonly session: Pkcs11js.Handle;
  readonly token: Token;
}

/**
 * Loads the module, selects the token, logs in and runs `find` (an existing key, or a new one); on any
 * failure everything is released again. The returned key keeps the session.
 */
export async function withSession(
  opts: TokenKeyOptions,
  ref: Pkcs11KeyRef,
  uri: string,
  write: boolean,
  find: (context: SessionContext) => KeyPairHandles | Promise<KeyPairHandles>,
): Promise<TokenKey> {
  const module = await openModule(opts.modulePath);
  let session: Pkcs11js.Handle | undefined;
  try {
    const token = selectToken(module, ref, uri, { requireSelection: write });
    requireEcdsa(module, token, uri);
    const pin = await opts.pin(token);
    session = openSession(module, token, uri, write);
    login(module, session, token, pin, uri);
    const found = await find({ module, session, token });
    const key = tokenKey(module, session, token, found);
    await proveKeyPair(key);
    return key;
  } catch (error) {
    if (session !== undefined) closeSession(module, session);
    module.release();
    throw error;
  }
}

function selectObject(ref: Pkcs11KeyRef): { label?: string; id?: Buffer } {
  return {
    ...(ref.object === undefined ? {} : { label: ref.object }),
    ...(ref.id === undefined ? {} : { id: ref.id }),
  };
}

function requireEcdsa(module: Pkcs11Module, token: Token, uri: string): void {
  const { api, ck } = module;
  let flags = 0;
  try {
    flags = api.C_GetMechanismInfo(token.slot, ck.CKM_ECDSA).flags;
  } catch (error) {
    if ((error as Error).message !== 'CKR_MECHANISM_INVALID') {
      throw tokenFailure(error, `reading the mechanisms of ${describeToken(token)} for ${uri}`);
    }
  }
  if ((flags & ck.CKF_SIGN) === 0) {
    throw new Pkcs11Error(
      'PKCS11_MECHANISM_UNSUPPORTED',
      `${describeToken(token)} (for ${uri}) cannot sign with CKM_ECDSA: the registry needs ECDSA P-256 keys`,
    );
  }
}

function tokenKey(
  module: Pkcs11Module,
  session: Pkcs11js.Handle,
  token: Token,
  found: KeyPairHandles,
): TokenKey {
  const { api, ck } = module;
  const resolvedUri = formatKeyUri({
    token: token.label,
    serial: token.serial,
    ...(found.label === '' ? {} : { object: found.label }),
    ...(found.id.length === 0 ? {} : { id: found.id }),
  });
  const publicKey = createPublicKey({ key: found.spkiDer, format: 'der', type: 'spki' });
  // One operation at a time per session (PKCS#11 §5.1): concurrent callers queue.
  let queue: Promise<unknown> = Promise.resolve();
  const signOnce = async (data: Uint8Array): Promise<Buffer> => {
    const digest = createHash('sha256').update(data).digest();
    let signature: Buffer;
    try {
      api.C_SignInit(session, { mechanism: ck.CKM_ECDSA }, found.privateKey);
      signature = Buffer.from(await api.C_SignAsync(session, digest, Buffer.alloc(P1363_BYTES)));
    } catch (error) {
      throw tokenFailure(error, `signing with ${resolvedUri}`);
    }
    if (
      signature.length !== P1363_BYTES ||
      !verify('sha256', data, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature)
    ) {
      throw new Pkcs11Error(
        'PKCS11_KEY_UNSUITABLE',
        `the token returned a signature for ${resolvedUri} that does not verify with its public key: ` +
          'the public key object does not belong to the private key, or the token is faulty',
      );
    }
    return signature;
  };
  let closed = false;
  return {
    spkiDer: found.spkiDer,
    resolvedUri,
    neverRevealed: found.neverRevealed,
    token,
    module,
    signP1363(data) {
      const next = queue.then(() => signOnce(data));
      queue = next.catch(() => undefined);
      return next;
    },
    close() {
      if (closed) return;
      closed = true;
      closeSession(module, session);
      module.release();
    },
  };
}

/** A signature over random bytes that verifies with the public key: the two objects are one key pair. */
async function proveKeyPair(key: TokenKey): Promise<void> {
  await key.signP1363(randomBytes(32));
}
