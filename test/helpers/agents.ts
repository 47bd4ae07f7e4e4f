import type postgres from 'postgres';
import type { TestAgent, TestPki } from './pki.js';
import { grantPermission, grantScope, type Principal } from './registry-rows.js';

/**
 * An agent certificate for every identity, each granted every destination by `principal` (whose
 * delegation rows for those destinations are written too). For tests and benchmarks that need many
 * identities allowed to the same loopback servers.
 */
export async function agentsAllowedTo(
  sql: postgres.Sql,
  pki: TestPki,
  principal: Principal,
  identities: readonly string[],
  destinations: readonly string[],
): Promise<Map<string, TestAgent>> {
  for (const destination of destinations) await grantScope(sql, principal.keyId, destination);
  const agents = new Map<string, TestAgent>();
  for (const identity of identities) {
    const agent = await pki.agent(identity);
    agents.set(identity, agent);
    for (const destination of destinations) {
      await grantPermission(sql, {
        permissionId: `${identity}@${destination}`,
        principal,
        identity,
        agentSpki: agent.spkiDer,
        destination,
      });
    }
  }
  return agents;
}
