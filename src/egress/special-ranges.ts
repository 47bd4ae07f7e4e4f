import { type Cidr, cidrContainsIp, type IpAddress, parseCidr } from './cidr.js';

/**
 * Address ranges an agent must not reach unless the operator allows them explicitly: everything that
 * is not ordinary public unicast (this host, private networks, link-local, multicast, documentation...)
 * and every IPv6 form that carries an IPv4 address inside it (mapped, compatible, NAT64, 6to4, Teredo),
 * because the socket or a translator on the path would deliver to that IPv4 address.
 *
 * Order matters: the first matching range names the refusal, so specific ranges come before the
 * catch-alls that contain them.
 */
export interface SpecialRange {
  readonly cidr: Cidr;
  /** Short reason name for logs and metrics, e.g. 'loopback'. */
  readonly reason: string;
}

const IPV4: ReadonlyArray<readonly [string, string]> = [
  ['0.0.0.0/8', 'unspecified'], // "this network"; 0.0.0.0 reaches the local host on Linux
  ['10.0.0.0/8', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link_local'], // includes cloud metadata services (169.254.169.254)
  ['172.16.0.0/12', 'private'],
  ['192.0.0.0/24', 'ietf_protocol'],
  ['192.0.2.0/24', 'documentation'],
  ['192.88.99.0/24', 'reserved'], // deprecated 6to4 relay anycast
  ['192.168.0.0/16', 'private'],
  ['198.18.0.0/15', 'benchmarking'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['255.255.255.255/32', 'broadcast'],
  ['240.0.0.0/4', 'reserved'],
];

const IPV6: ReadonlyArray<readonly [string, string]> = [
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::ffff:0:0/96', 'ipv4_embedded_ipv6'], // IPv4-mapped: the kernel connects to the IPv4 address
  ['::/96', 'ipv4_embedded_ipv6'], // IPv4-compatible (deprecated)
  ['64:ff9b::/96', 'ipv4_embedded_ipv6'], // NAT64 well-known prefix
  ['64:ff9b:1::/48', 'ipv4_embedded_ipv6'], // NAT64 local-use prefixes
  ['100::/64', 'discard'],
  ['2001::/32', 'ipv4_embedded_ipv6'], // Teredo
  ['2001:2::/48', 'benchmarking'],
  ['2001::/23', 'ietf_protocol'],
  ['2001:db8::/32', 'documentation'],
  ['2002::/16', 'ipv4_embedded_ipv6'], // 6to4
  ['3fff::/20', 'documentation'],
  ['fc00::/7', 'unique_local'],
  ['fe80::/10', 'link_local'],
  ['fec0::/10', 'site_local'],
  ['ff00::/8', 'multicast'],
  // Only 2000::/3 is allocated for global unicast; everything else is reserved. Failing closed here
  // means a future special-purpose assignment outside 2000::/3 is refused until someone allows it.
  ['::/3', 'reserved'],
  ['4000::/2', 'reserved'],
  ['8000::/1', 'reserved'],
];

function build(table: ReadonlyArray<readonly [string, string]>): readonly SpecialRange[] {
  return Object.freeze(table.map(([cidr, reason]) => Object.freeze({ cidr: parseCidr(cidr), reason })));
}

export const SPECIAL_RANGES_V4: readonly SpecialRange[] = build(IPV4);
export const SPECIAL_RANGES_V6: readonly SpecialRange[] = build(IPV6);

/** The first special range holding `ip`, or undefined for ordinary public unicast. */
export function specialRangeOf(ip: IpAddress): SpecialRange | undefined {
  const ranges = ip.family === 4 ? SPECIAL_RANGES_V4 : SPECIAL_RANGES_V6;
  for (const range of ranges) if (cidrContainsIp(range.cidr, ip)) return range;
  return undefined;
}

const MAPPED = parseCidr('::ffff:0:0/96');
const COMPATIBLE = parseCidr('::/96');
const NAT64 = parseCidr('64:ff9b::/96');
const NAT64_LOCAL = parseCidr('64:ff9b:1::/48');
const SIX_TO_FOUR = parseCidr('2002::/16');
const TEREDO = parseCidr('2001::/32');

/**
 * The IPv4 addresses an IPv6 address would deliver to, for the forms that embed one. The guard vets
 * them as IPv4 even when the operator allowed the IPv6 form, so that allowing e.g. a NAT64 prefix
 * does not also open 64:ff9b::10.0.0.1 (a private address behind the translator).
 */
export function embeddedIPv4s(ip: IpAddress): IpAddress[] {
  if (ip.family !== 6) return [];
  const w = ip.words;
  const v4 = (word: number): IpAddress => ({ family: 4, words: Uint32Array.of(word) });
  if (cidrContainsIp(MAPPED, ip) || cidrContainsIp(NAT64, ip)) return [v4(w[3]!)];
  // "::" and "::1" are the unspecified and loopback addresses, not IPv4-compatible ones.
  if (cidrContainsIp(COMPATIBLE, ip)) return w[3]! > 1 ? [v4(w[3]!)] : [];
  // Local-use NAT64 prefixes may be /48 to /96 (RFC 6052 positions); /96 (IPv4 in the low 32 bits)
  // is what deployments use, and vetting those bits can only refuse more, never less.
  if (cidrContainsIp(NAT64_LOCAL, ip)) return [v4(w[3]!)];
  // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
  if (cidrContainsIp(SIX_TO_FOUR, ip)) return [v4(((w[0]! & 0xffff) << 16) | (w[1]! >>> 16))];
  // Teredo: server IPv4 in bits 32-63, client IPv4 (bit-inverted) in the low 32 bits.
  if (cidrContainsIp(TEREDO, ip)) return [v4(w[1]!), v4(~w[3]!)];
  return [];
}
