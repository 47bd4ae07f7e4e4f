import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type ClientTls, http1Connect } from '../helpers/clients.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { createPrincipal, grantPermission, grantScope, type Principal } from '../helpers/registry-rows.js';

/**
 * With egress.allow_cidrs covering loopback (as for a local test service), a permitted tunnel to the
 * gateway's own listening port or to the registry's port is still refused: the first can only loop through
 * the gateway, the second hands an agent a socket to the trust root. Other loopback ports stay reachable.
 */

let pki: TestPki;
let db: FreshDatabase;
let gateway: GatewayProcess;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let principal: Principal;
let tls: ClientTls;
let agentSpki: Buffer;
let n = 0;

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  echo = await startEchoServer();
  const agent = await pki.agent('agent-loop');
  agentSpki = agent.spkiDer;
  tls = { caPath: pki.caCertPath, agent };
  principal = await createPrincipal(db.sql, 'org-loop');
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      allowCidrs: ['127.0.0.0/8', '::1/128'],
    }),
  );
});

after(async () => {
  await gateway?.stop();
  await echo?.close();
  await db?.drop();
  await pki?.cleanup();
});

/** Grants the agent `destination` (so only the egress rules can refuse it) and CONNECTs to it. */
async function connectTo(destination: string): Promise<number> {
  await grantScope(db.sql, principal.keyId, destination);
  await grantPermission(db.sql, {
    permissionId: `perm-loop-${++n}`,
    principal,
    identity: 'agent-loop',
    agentSpki,
    destination,
  });
  const result = await http1Connect(gateway.port, tls, destination);
  result.socket.destroy();
  return result.status;
}

test('a loopback destination that allow_cidrs covers is reachable (control)', async () => {
  assert.equal(await connectTo(`127.0.0.1:${echo.port}`), 200);
});

test("the gateway's own listening port is refused on any loopback address", async () => {
  for (const host of ['127.0.0.1', '127.0.0.2', '[::1]']) {
    const destination = `${host}:${gateway.port}`;
    assert.equal(await connectTo(destination), 403, destination);
    const denied = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT denied' && l['dest_authority'] === destination,
    );
    assert.equal(denied['deny_reason'], 'egress_refused');
    assert.match(
      String(denied['deny_detail']),
      /is protected_endpoint \(.* port \d+: the gateway's own listener\)/,
    );
  }
});

test("the registry's port is refused", async () => {
  const registryPort = Number(new URL(db.url).port || 5432);
  const destination = `127.0.0.1:${registryPort}`;
  assert.equal(await connectTo(destination), 403);
  const denied = await gateway.waitForLog(
    (l) => l.msg === 'CONNECT denied' && l['dest_authority'] === destination,
  );
  assert.match(String(denied['deny_detail']), /protected_endpoint \(.* port \d+: the registry database\)/);
});
