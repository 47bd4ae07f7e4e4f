import { networkInterfaces } from 'node:os';

/**
 * Addresses this host answers on. The egress guard refuses them (unless allow_cidrs says
 * otherwise) so an agent cannot reach services bound on the gateway's own interfaces.
 */
export function ownAddresses(listenHost: string): string[] {
  const found = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) found.add(entry.address.split('%')[0]!.toLowerCase());
  }
  if (listenHost !== '0.0.0.0' && listenHost !== '::') found.add(listenHost.toLowerCase());
  return [...found];
}
