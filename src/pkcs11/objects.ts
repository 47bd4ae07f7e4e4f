// Object search and attribute reads on an open session, with failures mapped to coded errors.
import type * as Pkcs11js from 'pkcs11js';
import { p256Spki, p256SpkiFromEcPoint } from './ec-point.js';
import { Pkcs11Error, tokenFailure } from './errors.js';
import type { Pkcs11Module } from './module.js';

// A token holding more matching objects than this is not one we can reason about; say so instead of paging.
const MAX_MATCHES = 64;
// PKCS#11 2.40 (the private key's own SPKI); pkcs11js defines no constant for it.
const CKA_PUBLIC_KEY_INFO = 0x129;

export interface KeyPairHandles {
  readonly privateKey: Pkcs11js.Handle;
  /** The key's CKA_LABEL and CKA_ID as stored (either may be empty). */
  readonly label: string;
  readonly id: Buffer;
  readonly spkiDer: Buffer;
  /** CKA_SENSITIVE and not CKA_EXTRACTABLE: the token will not reveal the key (a key made elsewhere may not be). */
  readonly neverRevealed: boolean;
}

export function findObjects(
  module: Pkcs11Module,
  session: Pkcs11js.Handle,
  template: Pkcs11js.Template,
  action: string,
): Pkcs11js.Handle[] {
  const { api } = module;
  try {
    api.C_FindObjectsInit(session, template);
    try {
      return api.C_FindObjects(session, MAX_MATCHES);
    } finally {
      api.C_FindObjectsFinal(session);
    }
  } catch (error) {
    throw tokenFailure(error, action);
  }
}

export function readAttributes(
  module: Pkcs11Module,
  session: Pkcs11js.Handle,
  object: Pkcs11js.Handle,
  types: readonly number[],
  action: string,
): Map<number, Buffer> {
  try {
    const values = module.api.C_GetAttributeValue(
      session,
      object,
      types.map((type) => ({ type })),
    );
    return new Map(values.map((a) => [a.type, Buffer.from(a.value)]));
  } catch (error) {
    throw tokenFailure(error, action);
  }
}

/** A CK_ULONG attribute value (native byte order: little-endian on the x86-64 and arm64 we run on). */
export function ulong(value: Buffer | undefined): number | undefined {
  if (value?.length === 8) return Number(value.readBigUInt64LE());
  if (value?.length === 4) return value.readUInt32LE();
  return undefined;
}

/** CK_BBOOL attribute value. */
export function isTrue(value: Buffer | undefined): boolean {
  return value !== undefined && value.length === 1 && value[0] === 1;
}

/**
 * The private key object the reference names and its P-256 public key, from the public key object with
 * the same CKA_ID (or, without an id, the same label), or from the private key's CKA_PUBLIC_KEY_INFO.
 */
export function findKeyPair(
  module: Pkcs11Module,
  session: Pkcs11js.Handle,
  select: { label?: string; id?: Buffer },
  uri: string,
): KeyPairHandles {
  const { ck } = module;
  const byName: Pkcs11js.Template = [
    ...(select.label === undefined ? [] : [{ type: ck.CKA_LABEL, value: select.label }]),
    ...(select.id === undefined ? [] : [{ type: ck.CKA_ID, value: select.id }]),
  ];
  const privates = findObjects(
    module,
    session,
    [{ type: ck.CKA_CLASS, value: ck.CKO_PRIVATE_KEY }, ...byName],
    `searching for the private key ${uri}`,
  );
  const [privateKey, ...more] = privates;
  if (privateKey === undefined) {
    throw new Pkcs11Error(
      'PKCS11_OBJECT_NOT_FOUND',
      `the token holds no private key matching ${uri}: check object=/id= in the URI (\`pkcs11-tool ` +
        '--list-objects --login` lists what it holds), or create the key first (principal create-key / agent create)',
    );
  }
  if (more.length > 0) {
    throw new Pkcs11Error(
      'PKCS11_OBJECT_AMBIGUOUS',
      `${privates.length} private keys match ${uri}: add id=... (the CKA_ID of one of them) to the URI`,
    );
  }
  const read = `reading the private key ${uri}`;
  const attrs = readAttributes(
    module,
    session,
    privateKey,
    [ck.CKA_KEY_TYPE, ck.CKA_SIGN, ck.CKA_LABEL, ck.CKA_ID, ck.CKA_SENSITIVE, ck.CKA_EXTRACTABLE],
    read,
  );
  if (ulong(attrs.get(ck.CKA_KEY_TYPE)) !== ck.CKK_EC) {
    throw new Pkcs11Error('PKCS11_KEY_UNSUITABLE', `${uri} is not an EC key: the registry needs ECDSA P-256`);
  }
  if (!isTrue(attrs.get(ck.CKA_SIGN))) {
    throw new Pkcs11Error(
      'PKCS11_KEY_UNSUITABLE',
      `${uri} may not sign (CKA_SIGN is false): use a signing key`,
    );
  }
  const label = attrs.get(ck.CKA_LABEL)?.toString('utf8') ?? '';
  const id = attrs.get(ck.CKA_ID) ?? Buffer.alloc(0);
  return {
    privateKey,
    label,
    id,
    spkiDer: publicKeyOf(module, session, privateKey, { label, id }, uri),
    neverRevealed: isTrue(attrs.get(ck.CKA_SENSITIVE)) && !isTrue(attrs.get(ck.CKA_EXTRACTABLE)),
  };
}

function publicKeyOf(
  module: Pkcs11Module,
  session: Pkcs11js.Handle,
  privateKey: Pkcs11js.Handle,
  pair: { label: string; id: Buffer },
  uri: string,
): Buffer {
  const { ck } = module;
  const match =
    pair.id.length > 0 ? { type: ck.CKA_ID, value: pair.id } : { type: ck.CKA_LABEL, value: pair.label };
  const publics = findObjects(
    module,
    session,
    [{ type: ck.CKA_CLASS, value: ck.CKO_PUBLIC_KEY }, match],
    `searching for the public key of ${uri}`,
  );
  const spkis = publics.map((handle) => {
    const attrs = readAttributes(
      module,
      session,
      handle,
      [ck.CKA_EC_PARAMS, ck.CKA_EC_POINT],
      `reading the public key of ${uri}`,
    );
    return p256SpkiFromEcPoint(
      attrs.get(ck.CKA_EC_PARAMS) ?? Buffer.alloc(0),
      attrs.get(ck.CKA_EC_POINT) ?? Buffer.alloc(0),
    );
  });
  const distinct = [
    ...new Map(spkis.filter((s) => s !== undefined).map((s) => [s.toString('hex'), s])).values(),
  ];
  if (distinct.length > 1) {
    throw new Pkcs11Error(
      'PKCS11_OBJECT_AMBIGUOUS',
      `several different public keys share the id/label of ${uri}: give each key pair its own CKA_ID`,
    );
  }
  const fromPublicObject = distinct[0];
  if (fromPublicObject !== undefined) return fromPublicObject;
  if (publics.length > 0) {
    throw new Pkcs11Error(
      'PKCS11_KEY_UNSUITABLE',
      `the public key of ${uri} is not a P-256 key: the registry needs P-256`,
    );
  }
  // No public object: PKCS#11 2.40 lets a private key carry its SPKI itself.
  const info = readOptional(module, session, privateKey, CKA_PUBLIC_KEY_INFO);
  const fromInfo = info === undefined ? undefined : p256Spki(info);
  if (fromInfo !== undefined) return fromInfo;
  throw new Pkcs11Error(
    'PKCS11_OBJECT_NOT_FOUND',
    `the token holds the private key ${uri} but no public key object with the same id or label, so its ` +
      'public key cannot be read: import the public key object next to it',
  );
}

function readOptional(
  module: Pkcs11Module,
  session: Pkcs11js.Handle,
  object: Pkcs11js.Handle,
  type: number,
): Buffer | undefined {
  try {
    const [value] = module.api.C_GetAttributeValue(session, object, [{ type }]);
    return value === undefined ? undefined : Buffer.from(value.value);
  } catch {
    return undefined; // CKR_ATTRIBUTE_TYPE_INVALID on modules older than 2.40
  }
}
