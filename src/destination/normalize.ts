import { isIPv6 } from 'node:net';

/**
 * The one destination normalizer: the gateway uses it on every CONNECT authority and every tool that
 * writes registry rows uses it before signing, so that a row and a request can only match byte for byte.
 * Rules (interop contract): `host:port` or `[ipv6]:port`, port defaults to 443, host lower-cased.
 */
export class DestinationError extends Error {
  override name = 'DestinationError';
}

export interface Destination {
  /** Host as it appears in the normalized form, without brackets (lower-cased). */
  readonly host: string;
  readonly port: number;
  /** True when `host` is an IPv6 literal (the authority then brackets it). */
  readonly ipv6: boolean;
  /** Normalized `host:port` or `[ipv6]:port`: the form stored in the registry. */
  readonly authority: string;
}

const DEFAULT_PORT = 443;
/** What a destination looks like, for help texts and messages. */
export const DESTINATION_FORMS = 'host, host:port or [ipv6]:port (port 443 when left out; not a URL)';
/** Decimal digits read by value: leading zeros are allowed (as by the reference), at most five significant digits. */
const PORT_DIGITS = /^0*[0-9]{1,5}$/;
/**
 * Stricter than the reference normalizer on purpose: a host is a DNS name or an IPv4 literal, so only
 * letters, digits, '.', '-' and '_' may appear. This keeps control bytes, spaces, newlines (which would
 * forge lines of the signed canonical form) and URL syntax out of rows, logs and DNS queries.
 */
const HOST_CHARS = /^[A-Za-z0-9._-]+$/;
/**
 * `scheme://`: someone wrote a URL where a destination goes. Such text is never accepted ('/' appears in no
 * valid form), so this only picks the message: without it, `https://api.example.com/` is read as host
 * `https` with port `//api.example.com/`.
 */
const URL_SCHEME = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
/** Ports implied by the URL schemes people paste, for the suggestion in the message. */
const SCHEME_PORTS: Readonly<Record<string, number>> = { 'https:': 443, 'http:': 80 };

export function parseDestination(input: string): Destination {
  const text = trimWhiteSpace(input);
  if (text === '')
    throw new DestinationError('destination is empty: expected host, host:port or [ipv6]:port');
  if (URL_SCHEME.test(text)) throw urlGiven(text, input);
  if (text.startsWith('[')) return parseBracketed(text, input);
  const colons = countColons(text);
  if (colons > 1) {
    if (!isIPv6Literal(text)) {
      throw new DestinationError(`destination ${quote(input)} has several ':' but is not an IPv6 address`);
    }
    return build(text.toLowerCase(), DEFAULT_PORT, true);
  }
  if (colons === 0) return build(checkHost(text, input).toLowerCase(), DEFAULT_PORT, false);
  const cut = text.indexOf(':');
  const host = checkHost(text.slice(0, cut), input);
  return build(host.toLowerCase(), parsePort(text.slice(cut + 1), input), false);
}

/** The normalized authority string, or a DestinationError naming what is wrong. */
export function normalizeDestination(input: string): string {
  return parseDestination(input).authority;
}

function parseBracketed(text: string, input: string): Destination {
  const close = text.indexOf(']');
  if (close < 0) throw new DestinationError(`destination ${quote(input)} opens '[' without a closing ']'`);
  const address = text.slice(1, close);
  if (!isIPv6Literal(address)) {
    throw new DestinationError(
      `destination ${quote(input)}: [${address}] is not an IPv6 address (zone ids are not allowed)`,
    );
  }
  const rest = text.slice(close + 1);
  if (rest === '') return build(address.toLowerCase(), DEFAULT_PORT, true);
  if (!rest.startsWith(':')) {
    throw new DestinationError(`destination ${quote(input)}: expected ':port' or nothing after ']'`);
  }
  return build(address.toLowerCase(), parsePort(rest.slice(1), input), true);
}

/** The error for a URL given as a destination, suggesting the destination the URL's origin names. */
function urlGiven(text: string, input: string): DestinationError {
  let suggestion = '';
  try {
    const url = new URL(text);
    const port = url.port === '' ? SCHEME_PORTS[url.protocol] : Number(url.port);
    if (url.hostname !== '' && port !== undefined)
      suggestion = `; for this URL write ${quote(`${url.hostname}:${port}`)}`;
  } catch {
    // No suggestion for text that is not even a URL; the message still says what a destination is.
  }
  return new DestinationError(
    `destination ${quote(input)} is a URL, not a destination: write ${DESTINATION_FORMS}, ` +
      `e.g. "api.example.com" or "api.example.com:8443"${suggestion}`,
  );
}

function checkHost(host: string, input: string): string {
  if (host === '') throw new DestinationError(`destination ${quote(input)} has an empty host`);
  if (host.length > 253)
    throw new DestinationError(`destination ${quote(input)}: host is longer than 253 characters`);
  if (!HOST_CHARS.test(host)) {
    throw new DestinationError(
      `destination ${quote(input)}: host may contain only letters, digits, '.', '-' and '_' (or be an IPv6 address)`,
    );
  }
  return host;
}

function parsePort(text: string, input: string): number {
  if (!PORT_DIGITS.test(text)) {
    throw new DestinationError(
      `destination ${quote(input)}: port ${quote(text)} is not a number from 1 to 65535`,
    );
  }
  const port = Number(text);
  if (port < 1 || port > 65535) {
    throw new DestinationError(`destination ${quote(input)}: port ${port} is outside 1-65535`);
  }
  return port;
}

function isIPv6Literal(text: string): boolean {
  // net.isIPv6 accepts zone ids ("fe80::1%eth0"); the contract forbids them.
  return !text.includes('%') && isIPv6(text);
}

/**
 * The contract's "trim" is the reference's (Rust str::trim): Unicode White_Space at both ends.
 * String.prototype.trim differs: it also strips U+FEFF (not White_Space), which would map
 * "\uFEFFapi.example.com" onto a destination the reference keeps distinct, and keeps U+0085.
 */
function trimWhiteSpace(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isWhiteSpace(text.charCodeAt(start))) start++;
  while (end > start && isWhiteSpace(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

function isWhiteSpace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    c === 0x20 ||
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

function countColons(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 58) n++;
  return n;
}

function build(host: string, port: number, ipv6: boolean): Destination {
  return { host, port, ipv6, authority: ipv6 ? `[${host}]:${port}` : `${host}:${port}` };
}

function quote(text: string): string {
  return JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text);
}
