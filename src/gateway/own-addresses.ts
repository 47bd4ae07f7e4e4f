import { networkInterfaces } from 'node:os';
import { parseIpAddress, sameIpAddress } from '../egress/cidr.js';
import type { ProtectedEndpoint } from '../egress/guard.js';
import { type LookupFn, resolveHost } from '../egress/resolve.js';
import { specialRangeOf } from '../egress/special-ranges.js';

/**
 * Addresses this host answers on. The egress guard refuses them (unless allow_cidrs says
 * otherwise) so an agent cannot reach services bound on the gateway's own interfaces.
 */
export function ownAddresses(listenHost: string): string[] {
  const found = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) found.add(entry.address.split('%')[0]!.toLowerCase());
  }
  if (!isWildcard(listenHost)) found.add(listenHost.toLowerCase());
  return [...found];
}

export const LISTENER = "the gateway's own listener";
export const REGISTRY = 'the registry database';

/**
 * The endpoints no tunnel may reach, whatever allow_cidrs says: the gateway's own listening port and the
 * registry's host:port. A service on this host (bound to a wildcard or loopback address) is reachable on
 * every address of the host, any 127.0.0.0/8 address, and the unspecified address (Linux connects 0.0.0.0
 * to the host itself), so those are all protected at its port.
 */
export function protectedEndpoints(opts: {
  readonly ownAddresses: readonly string[];
  readonly listener: { readonly host: string; readonly port: number };
  /** The registry's endpoints, each host already resolved to its addresses. */
  readonly registry: readonly { readonly addresses: readonly string[]; readonly port: number }[];
}): ProtectedEndpoint[] {
  const own = opts.ownAddresses.map((text) => parseIpAddress(text)).filter((ip) => ip !== undefined);
  const onThisHost = (address: string): boolean => {
    const ip = parseIpAddress(address);
    if (ip === undefined) return false;
    const reason = specialRangeOf(ip)?.reason;
    return reason === 'loopback' || reason === 'unspecified' || own.some((o) => sameIpAddress(o, ip));
  };
  const thisHost = (port: number, what: string): ProtectedEndpoint[] =>
    [...opts.ownAddresses, ...THIS_HOST].map((address) => ({ cidr: address, port, what }));
  const endpoints: ProtectedEndpoint[] = [];
  const { host, port } = opts.listener;
  endpoints.push(...(onThisHost(host) ? thisHost(port, LISTENER) : [{ cidr: host, port, what: LISTENER }]));
  for (const registry of opts.registry) {
    for (const address of registry.addresses) {
      endpoints.push(
        ...(onThisHost(address)
          ? thisHost(registry.port, REGISTRY)
          : [{ cidr: address, port: registry.port, what: REGISTRY }]),
      );
    }
  }
  return dedupe(endpoints);
}

/**
 * The registry's TCP endpoints (host and port as the PostgreSQL driver parsed them from the URL), each host
 * resolved once, now. A Unix-socket registry has none. A host that does not resolve fails the start: the
 * gateway cannot protect what it cannot name.
 */
export async function resolveRegistryEndpoints(
  endpoints: readonly { readonly host: string; readonly port: number }[],
  opts: { timeoutMs: number; lookup?: LookupFn },
): Promise<{ addresses: string[]; port: number }[]> {
  return Promise.all(
    endpoints.map(async ({ host, port }) => {
      const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
      try {
        const answers = await resolveHost(bare, opts);
        return { addresses: answers.map((a) => a.address), port };
      } catch (err) {
        throw new Error(
          `cannot resolve the registry host ${JSON.stringify(host)}, which tunnels must be kept away from: ` +
            `${(err as Error).message}`,
        );
      }
    }),
  );
}

/** Loopback and unspecified ("this host") addresses, which reach a service bound on this host. */
const THIS_HOST = ['127.0.0.0/8', '::1/128', '0.0.0.0/8', '::/128'];

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

function dedupe(endpoints: ProtectedEndpoint[]): ProtectedEndpoint[] {
  const seen = new Set<string>();
  return endpoints.filter((e) => {
    const key = `${e.cidr} ${e.port}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
