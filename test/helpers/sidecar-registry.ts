import type postgres from 'postgres';
import { createPrincipal, grantPermission, grantScope } from './registry-rows.js';

/**
 * Lets `identity` (with the key `agentSpki`) reach each loopback port: one principal, and per port a
 * delegation and a signed permission, as the sidecar tests and the benchmark need.
 */
export async function grantLoopbackPorts(
  sql: postgres.Sql,
  grant: {
    readonly identity: string;
    readonly agentSpki: Buffer;
    readonly ports: readonly number[];
    /** Default 127.0.0.1. */
    readonly host?: string;
  },
): Promise<void> {
  const principal = await createPrincipal(sql, `org-of-${grant.identity}`);
  for (const [i, port] of grant.ports.entries()) {
    const destination = `${grant.host ?? '127.0.0.1'}:${port}`;
    await grantScope(sql, principal.keyId, destination);
    await grantPermission(sql, {
      permissionId: `perm-${grant.identity}-${i + 1}`,
      principal,
      identity: grant.identity,
      agentSpki: grant.agentSpki,
      destination,
    });
  }
}
