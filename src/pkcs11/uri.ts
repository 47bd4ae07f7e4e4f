// RFC 7512 PKCS#11 URIs (`pkcs11:token=org-keys;object=org-alice`) naming a private key in a token.
//
// What is supported, and why the rest is refused rather than ignored (an ignored attribute could select
// another key than the operator meant):
// - path attributes `token`, `manufacturer`, `serial`, `model` (which token), `object` (CKA_LABEL), `id`
//   (CKA_ID, bytes) and `type`, which must be `private` when given: every place that takes a URI takes a
//   private key;
// - no query attributes: `pin-value` and `pin-source` are refused because a PIN in a command line is
//   visible to every user (`ps`), kept in shell history and copied into logs, and the PIN has one way in
//   (an environment variable named by `--pin-env`, or the prompt); `module-path`/`module-name` are refused
//   because the module is chosen by `--pkcs11-module`, one place, not two that could disagree;
// - library and slot attributes (`library-*`, `slot-*`) and vendor `x-*` attributes are refused: tokens
//   are found by their own attributes, which survive re-plugging and slot renumbering.
// Values are percent-decoded to bytes; text attributes must be UTF-8. Attribute names are lower case and
// may appear once. Error messages never repeat an attribute value, so a PIN typed into a URI by mistake is
// not echoed to the terminal or a log.
import { Pkcs11Error } from './errors.js';

/** A private key in a PKCS#11 token, as a URI names it. Absent fields match anything. */
export interface Pkcs11KeyRef {
  readonly token?: string;
  readonly manufacturer?: string;
  readonly serial?: string;
  readonly model?: string;
  /** CKA_LABEL of the key objects. */
  readonly object?: string;
  /** CKA_ID of the key objects. */
  readonly id?: Buffer;
}

/** One parsed attribute: its name and its percent-decoded value. */
export interface UriAttribute {
  readonly name: string;
  readonly value: Buffer;
}

export interface ParsedPkcs11Uri {
  readonly path: readonly UriAttribute[];
  readonly query: readonly UriAttribute[];
}

const SCHEME = 'pkcs11:';
const MAX_URI_LENGTH = 4096;
// RFC 7512 pk11-pchar / pk11-qchar without pct-encoded: unreserved plus the characters each part allows.
const UNRESERVED = 'A-Za-z0-9\\-._~';
const PATH_CHAR = new RegExp(`[${UNRESERVED}:\\[\\]@!$'()*+,=&]`);
const QUERY_CHAR = new RegExp(`[${UNRESERVED}:\\[\\]@!$'()*+,=/?|]`);
const ATTRIBUTE_NAME = /^[a-z][a-z0-9-]*$/;
const HEX = /^[0-9A-Fa-f]{2}$/;

/** Text attributes and the width of their fixed CK_TOKEN_INFO field (a longer value can never match). */
const TEXT_ATTRIBUTES: Readonly<Record<string, number | undefined>> = {
  token: 32,
  manufacturer: 32,
  serial: 16,
  model: 16,
  object: undefined,
};
const FORMAT_ORDER = ['token', 'manufacturer', 'serial', 'model', 'object'] as const;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** True when `text` is meant as a PKCS#11 URI rather than a file name (the scheme is case-insensitive). */
export function isPkcs11Uri(text: string): boolean {
  return text.slice(0, SCHEME.length).toLowerCase() === SCHEME;
}

function invalid(message: string): Pkcs11Error {
  return new Pkcs11Error('PKCS11_URI_INVALID', `not a usable PKCS#11 URI: ${message}`);
}

/** The generic RFC 7512 structure: attributes in order, values decoded. Throws PKCS11_URI_INVALID. */
export function parsePkcs11Uri(text: string): ParsedPkcs11Uri {
  if (!isPkcs11Uri(text)) throw invalid(`it must start with "${SCHEME}"`);
  if (text.length > MAX_URI_LENGTH) throw invalid(`it is longer than ${MAX_URI_LENGTH} characters`);
  const rest = text.slice(SCHEME.length);
  const cut = rest.indexOf('?');
  const pathText = cut === -1 ? rest : rest.slice(0, cut);
  const queryText = cut === -1 ? undefined : rest.slice(cut + 1);
  const path = attributes(pathText, ';', PATH_CHAR, 'path', SCHEME.length);
  const query =
    queryText === undefined ? [] : attributes(queryText, '&', QUERY_CHAR, 'query', SCHEME.length + cut + 1);
  const seen = new Set<string>();
  for (const { name } of [...path, ...query]) {
    if (seen.has(name)) throw invalid(`attribute ${quoted(name)} appears more than once`);
    seen.add(name);
  }
  return { path, query };
}

function attributes(
  text: string,
  separator: string,
  allowed: RegExp,
  part: string,
  offset: number,
): UriAttribute[] {
  if (text === '') return [];
  const out: UriAttribute[] = [];
  let position = offset;
  for (const item of text.split(separator)) {
    const eq = item.indexOf('=');
    if (eq <= 0) {
      throw invalid(`the ${part} part holds an attribute without "name=" at position ${position + 1}`);
    }
    const name = item.slice(0, eq);
    if (!ATTRIBUTE_NAME.test(name)) {
      throw invalid(`${quoted(name)} at position ${position + 1} is not an attribute name (lower case)`);
    }
    out.push({ name, value: percentDecode(item.slice(eq + 1), allowed, position + eq + 1) });
    position += item.length + 1;
  }
  return out;
}

function percentDecode(value: string, allowed: RegExp, offset: number): Buffer {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const ch = value[i] ?? '';
    if (ch === '%') {
      const hex = value.slice(i + 1, i + 3);
      if (!HEX.test(hex)) {
        throw invalid(`"%" at position ${offset + i + 1} is not followed by two hex digits`);
      }
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (allowed.test(ch)) {
      bytes.push(ch.charCodeAt(0));
    } else {
      const code = (value.codePointAt(i) ?? 0).toString(16).toUpperCase().padStart(4, '0');
      throw invalid(`character U+${code} at position ${offset + i + 1} must be percent-encoded`);
    }
  }
  return Buffer.from(bytes);
}

/**
 * The private key a URI names, checked against what this project supports (see the file comment).
 * Throws PKCS11_URI_INVALID with a message that names no attribute value.
 */
export function parseKeyUri(text: string): Pkcs11KeyRef {
  const { path, query } = parsePkcs11Uri(text);
  for (const { name } of query) throw invalid(refusedQuery(name));
  const ref: { -readonly [K in keyof Pkcs11KeyRef]: Pkcs11KeyRef[K] } = {};
  for (const { name, value } of path) {
    if (name === 'id') {
      if (value.length === 0)
        throw invalid("id= is empty: give the key's CKA_ID (e.g. id=%01) or leave it out");
      ref.id = value;
    } else if (name === 'type') {
      if (value.toString('latin1') !== 'private') {
        throw invalid('type= must be "private" (or left out): this names the private key of a key pair');
      }
    } else if (name in TEXT_ATTRIBUTES) {
      const field = name as (typeof FORMAT_ORDER)[number];
      ref[field] = textValue(field, value);
    } else {
      throw invalid(refusedPath(name));
    }
  }
  if (ref.object === undefined && ref.id === undefined) {
    throw invalid("it names no key: add object=LABEL (the key's CKA_LABEL) and/or id=%xx (its CKA_ID)");
  }
  return ref;
}

function textValue(name: (typeof FORMAT_ORDER)[number], value: Buffer): string {
  if (value.length === 0) throw invalid(`${name}= is empty: give a value or leave the attribute out`);
  const width = TEXT_ATTRIBUTES[name];
  if (width !== undefined && value.length > width) {
    throw invalid(`${name}= is longer than the ${width} bytes a PKCS#11 token ${name} field holds`);
  }
  try {
    return UTF8.decode(value);
  } catch {
    throw invalid(`${name}= does not decode to UTF-8 text`);
  }
}

function refusedQuery(name: string): string {
  if (name === 'pin-value' || name === 'pin-source') {
    return (
      `${name} is refused: a PIN in a URI is visible in the process list and shell history and ends up in ` +
      'logs; remove it and give the PIN through --pin-env VAR (the variable holds the PIN) or the prompt'
    );
  }
  if (name === 'module-path' || name === 'module-name') {
    return `${name} is refused: name the PKCS#11 module with --pkcs11-module PATH (or AGENT_GATEWAY_PKCS11_MODULE)`;
  }
  return `query attribute ${quoted(name)} is not supported (no query attributes are)`;
}

function refusedPath(name: string): string {
  if (name.startsWith('slot-') || name.startsWith('library-')) {
    return `${quoted(name)} is not supported: select the token with token=, serial=, manufacturer= or model=`;
  }
  if (name === 'pin-value' || name === 'pin-source') return refusedQuery(name);
  return (
    `path attribute ${quoted(name)} is not supported (supported: token, manufacturer, serial, model, ` +
    'object, id, type=private)'
  );
}

/** Attribute names are echoed (never values), shortened so a pasted secret cannot hide in a long "name". */
function quoted(name: string): string {
  return JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
}

/**
 * The URI of `ref`, every byte outside RFC 3986 "unreserved" percent-encoded. It holds no secret (a ref
 * never carries a PIN), so it is what messages show and what the TLS engine is given.
 */
export function formatKeyUri(ref: Pkcs11KeyRef, opts: { withType?: boolean } = {}): string {
  const parts: string[] = [];
  for (const name of FORMAT_ORDER) {
    const value = ref[name];
    if (value !== undefined) parts.push(`${name}=${percentEncode(Buffer.from(value, 'utf8'))}`);
  }
  if (ref.id !== undefined) parts.push(`id=${percentEncode(ref.id)}`);
  if (opts.withType === true) parts.push('type=private');
  return `${SCHEME}${parts.join(';')}`;
}

function percentEncode(bytes: Buffer): string {
  let out = '';
  for (const byte of bytes) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
