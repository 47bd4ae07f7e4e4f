import { isIP } from 'node:net';

/**
 * IP addresses and CIDR blocks as numbers, so that the egress guard (run on every CONNECT) compares
 * integers instead of re-parsing text. An address is one uint32 word (IPv4) or four (IPv6, most
 * significant first); families never mix, so an IPv4 block never matches an IPv6 address, not even
 * an IPv4-mapped one (the guard handles embedded IPv4 on purpose, not by accident of parsing).
 */
export class CidrError extends Error {
  override name = 'CidrError';
}

export interface IpAddress {
  readonly family: 4 | 6;
  /** One uint32 for IPv4, four uint32s (most significant first) for IPv6. */
  readonly words: Uint32Array;
}

export interface Cidr {
  /** Normalized text: network address (lower-case, RFC 5952 compressed for IPv6) and prefix. */
  readonly text: string;
  readonly family: 4 | 6;
  readonly prefix: number;
  /** The network address, already masked; same shape as IpAddress.words. */
  readonly network: Uint32Array;
  readonly mask: Uint32Array;
}

/**
 * Parses an IPv4 dotted quad or any IPv6 textual form (compressed, upper case, embedded dotted quad).
 * Returns undefined for anything else, including zone ids ("fe80::1%eth0"): a zone names an interface
 * of this host, which is never a legitimate egress destination, and node:net's isIP would accept it.
 */
export function parseIpAddress(text: string): IpAddress | undefined {
  if (text.includes('%')) return undefined;
  const family = isIP(text);
  if (family === 4) return { family: 4, words: Uint32Array.of(ipv4Word(text)) };
  if (family === 6) return { family: 6, words: ipv6Words(text) };
  return undefined;
}

export function parseCidr(text: string): Cidr {
  const entry = text.trim();
  if (entry === '') {
    throw new CidrError('empty CIDR entry: write an address or network such as "10.0.0.0/8" or "fd00::/8"');
  }
  const slash = entry.indexOf('/');
  const addressText = slash < 0 ? entry : entry.slice(0, slash);
  const prefixText = slash < 0 ? undefined : entry.slice(slash + 1);
  if (addressText.includes('%')) {
    throw new CidrError(`CIDR ${quote(text)}: zone ids ("%...") are not allowed; remove the zone`);
  }
  const address = parseIpAddress(addressText);
  if (address === undefined) {
    throw new CidrError(
      `CIDR ${quote(text)}: ${quote(addressText)} is not an IPv4 or IPv6 address (expected e.g. "10.0.0.0/8" or "fd00::/8")`,
    );
  }
  const maxPrefix = address.family === 4 ? 32 : 128;
  let prefix = maxPrefix;
  if (prefixText !== undefined) {
    prefix = /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : Number.NaN;
    if (!(prefix <= maxPrefix)) {
      throw new CidrError(
        `CIDR ${quote(text)}: prefix ${quote(prefixText)} must be a whole number from 0 to ${maxPrefix} for IPv${address.family}`,
      );
    }
  }
  const mask = prefixMask(address.words.length, prefix);
  const network = address.words.map((word, i) => word & mask[i]!);
  const networkText = `${formatIpAddress({ family: address.family, words: network })}/${prefix}`;
  if (network.some((word, i) => word !== address.words[i])) {
    // A block with host bits set is almost always a typo; guessing which part was meant would
    // silently widen or narrow a security boundary, so refuse and show the network form.
    throw new CidrError(
      `CIDR ${quote(text)} has host bits set after /${prefix}: write the network form ${quote(networkText)} (or a /${maxPrefix} for one address)`,
    );
  }
  return { text: networkText, family: address.family, prefix, network, mask };
}

/** Whether `address` (text) lies inside `cidr`. Throws CidrError when `address` is not an IP address. */
export function cidrContains(cidr: Cidr, address: string): boolean {
  const ip = parseIpAddress(address);
  if (ip === undefined) {
    // Throwing rather than answering false: a false "not contained" would silently pass a deny list.
    throw new CidrError(
      `${quote(address)} is not an IPv4 or IPv6 address; cannot test it against ${cidr.text}`,
    );
  }
  return cidrContainsIp(cidr, ip);
}

/** The hot-path form of cidrContains: the address is already parsed. */
export function cidrContainsIp(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const { network, mask } = cidr;
  for (let i = 0; i < network.length; i++) {
    if ((ip.words[i]! & mask[i]!) >>> 0 !== network[i]) return false;
  }
  return true;
}

/** Same numeric address (so "::1" equals "0:0:0:0:0:0:0:1"); families never compare equal. */
export function sameIpAddress(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.words.every((word, i) => word === b.words[i]);
}

/** Dotted quad for IPv4; lower-case hex with the longest run of zero groups compressed for IPv6. */
export function formatIpAddress(ip: IpAddress): string {
  if (ip.family === 4) {
    const w = ip.words[0]!;
    return `${w >>> 24}.${(w >>> 16) & 255}.${(w >>> 8) & 255}.${w & 255}`;
  }
  const groups: number[] = [];
  for (const w of ip.words) groups.push(w >>> 16, w & 0xffff);
  // RFC 5952: compress the longest run (the first one on a tie) of two or more zero groups.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end;
  }
  const hex = (part: number[]): string => part.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

function prefixMask(wordCount: number, prefix: number): Uint32Array {
  const mask = new Uint32Array(wordCount);
  for (let i = 0; i < wordCount; i++) {
    const bits = Math.min(32, Math.max(0, prefix - 32 * i));
    // `x << 32` is `x << 0` in JavaScript, so the empty mask needs its own case.
    mask[i] = bits === 0 ? 0 : 0xffffffff << (32 - bits);
  }
  return mask;
}

/** Callers have validated the text with isIP, so it is four decimal parts 0-255. */
function ipv4Word(text: string): number {
  let word = 0;
  let part = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === DOT) {
      word = word * 256 + part;
      part = 0;
    } else {
      part = part * 10 + (c - DIGIT_0);
    }
  }
  return word * 256 + part;
}

/**
 * Callers have validated the text with isIP, so this only expands '::' and a trailing dotted quad.
 * A single character scan (no split, no parseInt) because it runs for every resolved address.
 */
function ipv6Words(text: string): Uint32Array {
  const groups: number[] = [];
  let gapAt = -1;
  let group = 0;
  let digits = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === COLON) {
      if (digits > 0) groups.push(group);
      else if (i > 0) gapAt = groups.length; // second ':' of '::' (a leading '::' is seen at i = 1)
      group = 0;
      digits = 0;
    } else if (c === DOT) {
      // The last piece is a dotted quad: its first part was scanned as hex, so rescan it as IPv4.
      const start = text.lastIndexOf(':') + 1;
      const word = ipv4Word(text.slice(start));
      groups.push(word >>> 16, word & 0xffff);
      digits = 0;
      break;
    } else {
      group = group * 16 + hexValue(c);
      digits++;
    }
  }
  if (digits > 0) groups.push(group);
  if (gapAt >= 0) groups.splice(gapAt, 0, ...new Array<number>(8 - groups.length).fill(0));
  const words = new Uint32Array(4);
  for (let i = 0; i < 4; i++) words[i] = groups[2 * i]! * 0x10000 + groups[2 * i + 1]!;
  return words;
}

const DOT = 46;
const COLON = 58;
const DIGIT_0 = 48;

function hexValue(c: number): number {
  if (c <= 57) return c - 48; // '0'-'9'
  return (c | 0x20) - 87; // 'a'-'f' or 'A'-'F'
}

function quote(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);
}
