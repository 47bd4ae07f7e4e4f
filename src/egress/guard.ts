import {
  type Cidr,
  CidrError,
  cidrContainsIp,
  formatIpAddress,
  type IpAddress,
  parseCidr,
  parseIpAddress,
  sameIpAddress,
} from './cidr.js';
import { embeddedIPv4s, specialRangeOf } from './special-ranges.js';

/**
 * The SSRF check on a resolved address, the last word before the gateway dials. A permission row says
 * which name an agent may reach; this says which addresses that name may turn out to be, so that a
 * permitted name resolving to 127.0.0.1, 10.x or the cloud metadata service is refused.
 *
 * Precedence: denyCidrs always refuse; then protected endpoints (the gateway's own listener, the registry)
 * refuse at their port, whatever allowCidrs says; then an allowCidrs match accepts; otherwise special
 * ranges and the gateway's own addresses refuse. An IPv6 form that embeds IPv4 is refused unless an IPv6
 * allow entry covers it, and even then the embedded IPv4 must pass the IPv4 rules itself.
 */
export type EgressRefusal = {
  ok: false;
  /**
   * e.g. 'loopback', 'private', 'link_local', 'ipv4_embedded_ipv6', 'gateway_own_address',
   * 'protected_endpoint', 'deny_cidrs'.
   */
  reason: string;
  /** The address as it was checked. */
  address: string;
  /** The CIDR that matched (normalized), so an operator can see which rule to change. */
  rule: string;
};

export type EgressVerdict = { ok: true; address: string } | EgressRefusal;

export interface EgressGuardOptions {
  allowCidrs: readonly string[];
  denyCidrs: readonly string[];
  /** Addresses this gateway listens on or owns: dialling them would loop a tunnel into ourselves. */
  ownAddresses: readonly string[];
  /** Address ranges and ports never dialled, not even when allowCidrs covers them (see protect()). */
  protectedEndpoints?: readonly ProtectedEndpoint[];
}

/**
 * A port on a range of addresses that no tunnel may reach: the gateway's own listener (a tunnel into it
 * only loops) and the registry (the trust root: an agent must not get a socket to it, whatever it may
 * reach otherwise). Refused even inside allowCidrs, because allowing loopback or a private range for a
 * legitimate service must not open these too.
 */
export interface ProtectedEndpoint {
  /** An address or CIDR block. */
  readonly cidr: string;
  readonly port: number;
  /** What listens there, for the refusal's rule text (e.g. "the gateway's listener"). */
  readonly what: string;
}

type Rule = { reason: string; rule: string };

export class EgressGuard {
  readonly #allow: readonly Cidr[];
  readonly #deny: readonly Cidr[];
  readonly #own: readonly { ip: IpAddress; rule: string }[];
  #protected: { cidr: Cidr; port: number; rule: string }[] = [];

  constructor(opts: EgressGuardOptions) {
    this.#allow = parseList(opts.allowCidrs, 'allowCidrs');
    this.#deny = parseList(opts.denyCidrs, 'denyCidrs');
    this.#own = opts.ownAddresses.map((text, i) => {
      const ip = parseIpAddress(text.trim());
      if (ip === undefined) {
        throw new CidrError(
          `ownAddresses[${i}]: ${JSON.stringify(text)} is not an IPv4 or IPv6 address (no prefix, no zone id)`,
        );
      }
      return { ip, rule: `${formatIpAddress(ip)}/${ip.family === 4 ? 32 : 128}` };
    });
    this.protect(opts.protectedEndpoints ?? []);
  }

  /**
   * Adds endpoints to refuse. The gateway calls this once it listens, because only then is its port known
   * (`listen_addr` may say port 0); no CONNECT is decided before.
   */
  protect(endpoints: readonly ProtectedEndpoint[]): void {
    const parsed = endpoints.map((endpoint, i) => {
      if (!Number.isInteger(endpoint.port) || endpoint.port < 1 || endpoint.port > 65535) {
        throw new CidrError(`protectedEndpoints[${i}]: port ${endpoint.port} is not 1-65535`);
      }
      const cidr = parseList([endpoint.cidr], `protectedEndpoints[${i}]`)[0]!;
      return { cidr, port: endpoint.port, rule: `${cidr.text} port ${endpoint.port}: ${endpoint.what}` };
    });
    this.#protected = [...this.#protected, ...parsed];
  }

  /** The verdict on dialling `address` at `port` (the destination's port: some rules are per port). */
  check(address: string, port: number): EgressVerdict {
    const ip = parseIpAddress(address);
    if (ip === undefined) {
      return {
        ok: false,
        reason: 'invalid_address',
        address,
        rule: 'not an IP address (zone ids are refused)',
      };
    }
    const embedded = embeddedIPv4s(ip);
    const denied = this.#firstDeny(ip) ?? firstDefined(embedded, (v4) => this.#firstDeny(v4));
    if (denied !== undefined) return { ok: false, reason: 'deny_cidrs', address, rule: denied.text };
    const endpoint =
      this.#protectedAt(ip, port) ?? firstDefined(embedded, (v4) => this.#protectedAt(v4, port));
    if (endpoint !== undefined) return { ok: false, reason: 'protected_endpoint', address, rule: endpoint };

    let refused = this.#refusal(ip);
    // Reached only when the IPv6 form itself passed (i.e. an allow entry covered it explicitly).
    if (refused === undefined) refused = firstDefined(embedded, (v4) => this.#refusal(v4));
    if (refused !== undefined) return { ok: false, reason: refused.reason, address, rule: refused.rule };
    return { ok: true, address };
  }

  #protectedAt(ip: IpAddress, port: number): string | undefined {
    for (const p of this.#protected) if (p.port === port && cidrContainsIp(p.cidr, ip)) return p.rule;
    return undefined;
  }

  #firstDeny(ip: IpAddress): Cidr | undefined {
    for (const cidr of this.#deny) if (cidrContainsIp(cidr, ip)) return cidr;
    return undefined;
  }

  /** Why `ip` (not considering deny entries or embedded IPv4) is refused, or undefined if it may be dialled. */
  #refusal(ip: IpAddress): Rule | undefined {
    for (const cidr of this.#allow) if (cidrContainsIp(cidr, ip)) return undefined;
    const special = specialRangeOf(ip);
    if (special !== undefined) return { reason: special.reason, rule: special.cidr.text };
    for (const own of this.#own) {
      if (sameIpAddress(own.ip, ip)) return { reason: 'gateway_own_address', rule: own.rule };
    }
    return undefined;
  }
}

function parseList(entries: readonly string[], name: string): Cidr[] {
  return entries.map((entry, i) => {
    try {
      return parseCidr(entry);
    } catch (error) {
      if (error instanceof CidrError)
        throw new CidrError(`${name}[${i}]: ${error.message}`, { cause: error });
      throw error;
    }
  });
}

function firstDefined<T, R>(items: readonly T[], f: (item: T) => R | undefined): R | undefined {
  for (const item of items) {
    const result = f(item);
    if (result !== undefined) return result;
  }
  return undefined;
}
