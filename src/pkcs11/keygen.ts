// Generating a P-256 key pair inside a token (CKM_EC_KEY_PAIR_GEN). The private key is created sensitive
// and non-extractable, so the token will never hand out its value, wrapped or not; the attributes are read
// back after generation, and a token that did not honour them loses the new key again.
import { randomBytes } from 'node:crypto';
import type * as Pkcs11js from 'pkcs11js';
import { P256_EC_PARAMS } from './ec-point.js';
import { Pkcs11Error, tokenFailure } from './errors.js';
import type { Pkcs11Module } from './module.js';
import { findKeyPair, findObjects, isTrue, readAttributes } from './objects.js';
import { describeToken } from './token.js';
import { type SessionContext, type TokenKey, type TokenKeyOptions, withSession } from './token-key.js';
import { formatKeyUri, parseKeyUri } from './uri.js';

// CKA_ID of a new key when the URI names none: random, so two keys with the same label stay distinct.
const NEW_ID_BYTES = 16;

/** Creates the key pair the URI names (its token, object= label, optional id=); refuses to reuse a name. */
export async function generateTokenKey(opts: TokenKeyOptions): Promise<TokenKey> {
  const ref = parseKeyUri(opts.uri);
  const uri = formatKeyUri(ref);
  const label = ref.object;
  if (label === undefined) {
    throw new Pkcs11Error(
      'PKCS11_URI_INVALID',
      `${uri} names no object= label for the new key: add object=NAME (what later URIs will name it by)`,
    );
  }
  return withSession(opts, ref, uri, true, (context) => {
    refuseExisting(context, label, ref.id, uri);
    requireKeyGeneration(context, uri);
    const id = ref.id ?? randomBytes(NEW_ID_BYTES);
    const created = generate(context, label, id, uri);
    checkProtection(context, created, uri);
    return findKeyPair(context.module, context.session, { label, id }, uri);
  });
}

function refuseExisting(context: SessionContext, label: string, id: Buffer | undefined, uri: string): void {
  const { module, session } = context;
  const { ck } = module;
  const action = `checking whether ${uri} already exists`;
  const sameLabel = findObjects(module, session, [{ type: ck.CKA_LABEL, value: label }], action);
  const sameId =
    id === undefined ? [] : findObjects(module, session, [{ type: ck.CKA_ID, value: id }], action);
  if (sameLabel.length + sameId.length > 0) {
    throw new Pkcs11Error(
      'PKCS11_OBJECT_EXISTS',
      `${describeToken(context.token)} already holds an object named like ${uri}: choose another object= ` +
        "(keys are never replaced; delete the old one with the token's own tools if it is really unused)",
    );
  }
}

function requireKeyGeneration(context: SessionContext, uri: string): void {
  const { module, token } = context;
  const { api, ck } = module;
  let info: Pkcs11js.MechanismInfo | undefined;
  try {
    info = api.C_GetMechanismInfo(token.slot, ck.CKM_EC_KEY_PAIR_GEN);
  } catch (error) {
    if ((error as Error).message !== 'CKR_MECHANISM_INVALID') {
      throw tokenFailure(error, `reading the mechanisms of ${describeToken(token)} for ${uri}`);
    }
  }
  if (
    info === undefined ||
    (info.flags & ck.CKF_GENERATE_KEY_PAIR) === 0 ||
    info.maxKeySize < 256 ||
    info.minKeySize > 256
  ) {
    throw new Pkcs11Error(
      'PKCS11_MECHANISM_UNSUPPORTED',
      `${describeToken(token)} cannot generate P-256 key pairs (CKM_EC_KEY_PAIR_GEN), needed for ${uri}`,
    );
  }
}

function generate(context: SessionContext, label: string, id: Buffer, uri: string): Pkcs11js.KeyPair {
  const { module, session } = context;
  const { ck } = module;
  const common = [
    { type: ck.CKA_TOKEN, value: true },
    { type: ck.CKA_LABEL, value: label },
    { type: ck.CKA_ID, value: id },
  ];
  try {
    return module.api.C_GenerateKeyPair(
      session,
      { mechanism: ck.CKM_EC_KEY_PAIR_GEN },
      [
        { type: ck.CKA_CLASS, value: ck.CKO_PUBLIC_KEY },
        { type: ck.CKA_KEY_TYPE, value: ck.CKK_EC },
        ...common,
        { type: ck.CKA_EC_PARAMS, value: P256_EC_PARAMS },
        { type: ck.CKA_VERIFY, value: true },
        { type: ck.CKA_PRIVATE, value: false },
        ...[ck.CKA_WRAP, ck.CKA_DERIVE].map((type) => ({ type, value: false })),
      ],
      [
        { type: ck.CKA_CLASS, value: ck.CKO_PRIVATE_KEY },
        { type: ck.CKA_KEY_TYPE, value: ck.CKK_EC },
        ...common,
        { type: ck.CKA_PRIVATE, value: true },
        { type: ck.CKA_SENSITIVE, value: true },
        { type: ck.CKA_EXTRACTABLE, value: false },
        { type: ck.CKA_SIGN, value: true },
        // Signing only: no ECDH (derive) and no unwrapping, which some modules default to. CKA_DECRYPT and
        // CKA_ENCRYPT are left to the token: tpm2-pkcs11 1.9 fails the generation (CKR_GENERAL_ERROR) when
        // they are given as false, and PKCS#11 2.40 defines no encryption mechanism for EC keys.
        ...[ck.CKA_DERIVE, ck.CKA_UNWRAP].map((type) => ({ type, value: false })),
      ],
    );
  } catch (error) {
    throw tokenFailure(error, `generating the key pair ${uri} on ${describeToken(context.token)}`);
  }
}

/** What makes the key hardware-held: on the token, sensitive, never extractable. Destroys it otherwise. */
function checkProtection(context: SessionContext, created: Pkcs11js.KeyPair, uri: string): void {
  const { module, session } = context;
  const { ck } = module;
  const attrs = readAttributes(
    module,
    session,
    created.privateKey,
    [ck.CKA_TOKEN, ck.CKA_SENSITIVE, ck.CKA_EXTRACTABLE, ck.CKA_SIGN],
    `reading back the new key ${uri}`,
  );
  const protectedKey =
    isTrue(attrs.get(ck.CKA_TOKEN)) &&
    isTrue(attrs.get(ck.CKA_SENSITIVE)) &&
    !isTrue(attrs.get(ck.CKA_EXTRACTABLE)) &&
    isTrue(attrs.get(ck.CKA_SIGN));
  if (protectedKey) return;
  destroy(module, session, created);
  throw new Pkcs11Error(
    'PKCS11_KEY_UNSUITABLE',
    `${describeToken(context.token)} did not create ${uri} as a persistent, sensitive, non-extractable signing ` +
      'key; it was deleted again. This token cannot hold keys that never leave it',
  );
}

function destroy(module: Pkcs11Module, session: Pkcs11js.Handle, created: Pkcs11js.KeyPair): void {
  for (const handle of [created.privateKey, created.publicKey]) {
    try {
      module.api.C_DestroyObject(session, handle);
    } catch {
      // Best effort: the caller reports the real problem.
    }
  }
}
