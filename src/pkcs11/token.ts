// Finding the one token a URI selects, opening a session on it and logging in.
import type * as Pkcs11js from 'pkcs11js';
import { Pkcs11Error, tokenFailure } from './errors.js';
import type { Pkcs11Module } from './module.js';
import type { Pkcs11KeyRef } from './uri.js';

/** A present, initialized token, with its CK_TOKEN_INFO text fields unpadded (as URIs spell them). */
export interface Token {
  readonly slot: Pkcs11js.Handle;
  readonly label: string;
  readonly manufacturer: string;
  readonly serial: string;
  readonly model: string;
}

/** `label "org-keys", serial 8c5d…`: how messages name a token. */
export function describeToken(token: Token): string {
  return `token ${JSON.stringify(token.label)} (serial ${JSON.stringify(token.serial)})`;
}

/**
 * The one initialized token that matches the URI's token attributes. `uri` is the canonical URI, for
 * messages. With `requireSelection`, a URI without any token attribute is refused even when only one
 * token exists (key generation must not land on whatever token happens to be first).
 */
export function selectToken(
  module: Pkcs11Module,
  ref: Pkcs11KeyRef,
  uri: string,
  opts: { requireSelection?: boolean } = {},
): Token {
  const selects = ref.token !== undefined || ref.serial !== undefined;
  if (opts.requireSelection === true && !selects) {
    throw new Pkcs11Error(
      'PKCS11_URI_INVALID',
      `${uri} does not say which token to create the key in: add token=LABEL (or serial=...)`,
    );
  }
  const tokens = presentTokens(module, uri);
  const matching = tokens.filter(
    (t) =>
      (ref.token === undefined || t.label === ref.token) &&
      (ref.manufacturer === undefined || t.manufacturer === ref.manufacturer) &&
      (ref.serial === undefined || t.serial === ref.serial) &&
      (ref.model === undefined || t.model === ref.model),
  );
  const inventory =
    tokens.length === 0
      ? `module ${JSON.stringify(module.path)} shows no initialized token`
      : `module ${JSON.stringify(module.path)} has ${tokens.map(describeToken).join(', ')}`;
  if (matching.length === 0) {
    throw new Pkcs11Error(
      'PKCS11_TOKEN_NOT_FOUND',
      `no token matches ${uri} (${inventory}): check token=/serial= in the URI, --pkcs11-module, and that ` +
        'the token is present and initialized',
    );
  }
  const [only, ...others] = matching;
  if (only === undefined || others.length > 0) {
    throw new Pkcs11Error(
      'PKCS11_TOKEN_AMBIGUOUS',
      `${matching.length} tokens match ${uri} (${matching.map(describeToken).join(', ')}): add serial=... ` +
        'to the URI to name one',
    );
  }
  return only;
}

function presentTokens(module: Pkcs11Module, uri: string): Token[] {
  const { api, ck } = module;
  let slots: Pkcs11js.Handle[];
  try {
    slots = api.C_GetSlotList(true);
  } catch (error) {
    throw tokenFailure(error, `listing the tokens of module ${JSON.stringify(module.path)} for ${uri}`);
  }
  const tokens: Token[] = [];
  for (const slot of slots) {
    let info: Pkcs11js.TokenInfo;
    try {
      info = api.C_GetTokenInfo(slot);
    } catch {
      continue; // a slot whose token went away between the two calls
    }
    if ((info.flags & ck.CKF_TOKEN_INITIALIZED) === 0) continue;
    tokens.push({
      slot,
      label: unpad(info.label),
      manufacturer: unpad(info.manufacturerID),
      serial: unpad(info.serialNumber),
      model: unpad(info.model),
    });
  }
  return tokens;
}

/** CK_TOKEN_INFO strings are blank-padded to their field width; RFC 7512 values are not. */
function unpad(text: string): string {
  return text.replace(/[ \0]+$/, '');
}

/** Opens a session (read-write for key generation), failing with a coded error that names `uri`. */
export function openSession(
  module: Pkcs11Module,
  token: Token,
  uri: string,
  write: boolean,
): Pkcs11js.Handle {
  const { api, ck } = module;
  try {
    return api.C_OpenSession(token.slot, ck.CKF_SERIAL_SESSION | (write ? ck.CKF_RW_SESSION : 0));
  } catch (error) {
    throw tokenFailure(error, `opening a session on ${describeToken(token)} for ${uri}`);
  }
}

/**
 * Logs the user in. Login is per process in PKCS#11: when this process is already logged in to the token
 * (a second key on it, or the sidecar's TLS engine), that is success, and the PIN is not checked again.
 */
export function login(
  module: Pkcs11Module,
  session: Pkcs11js.Handle,
  token: Token,
  pin: string,
  uri: string,
): void {
  try {
    module.api.C_Login(session, module.ck.CKU_USER, pin);
  } catch (error) {
    if ((error as Error).message === 'CKR_USER_ALREADY_LOGGED_IN') return;
    throw tokenFailure(error, `logging in to ${describeToken(token)} for ${uri}`);
  }
}

export function closeSession(module: Pkcs11Module, session: Pkcs11js.Handle): void {
  try {
    module.api.C_CloseSession(session);
  } catch {
    // Already gone with its token; nothing left to release.
  }
}
