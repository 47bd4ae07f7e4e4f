import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { migrate } from '../../src/registry/migrate.js';
import { http1Connect } from '../helpers/clients.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { LiveTunnels } from '../helpers/live-tunnels.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

/**
 * A registry written for the original gateway: the schema at version 1 and nothing of ours (no
 * agent_gateway_ext extension, so no change notifications). Open tunnels are still closed by the periodic
 * re-check, and the decision cache stays off, since nothing would invalidate it in time.
 */
let pki: TestPki;
let db: FreshDatabase;
let gateway: GatewayProcess;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let live: LiveTunnels;

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase({ migrate: false });
  await migrate(db.sql, { extension: false });
  echo = await startEchoServer();
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraPolicy: 'revalidation_interval_ms = 200',
    }),
  );
  live = new LiveTunnels(
    pki,
    () => db.sql,
    `127.0.0.1:${echo.port}`,
    () => gateway,
    'poll',
  );
});

after(async () => {
  await gateway?.stop();
  await echo?.close();
  await db?.drop();
  await pki?.cleanup();
});

test('without the extension the live check says it polls, and the decision cache is never used', {
  timeout: 30_000,
}, async () => {
  const status = await gateway.waitForLog((l) => l.msg === 'live check healthy', 'live check status');
  assert.equal(status['mode'], 'polling');
  assert.match(String(status['detail']), /no agent_gateway_ext extension/);
  const g = await live.granted();
  for (let i = 0; i < 3; i++) {
    const res = await http1Connect(gateway.port, g.tls, live.destination);
    assert.equal(res.status, 200);
    res.socket.destroy();
  }
  await gateway.waitForLog(
    (l) =>
      l.msg === 'CONNECT allowed' &&
      l['permission_id'] === g.permissionId &&
      gateway.logs.filter((m) => m.msg === 'CONNECT allowed' && m['permission_id'] === g.permissionId)
        .length === 3,
    'three allows',
  );
  const allows = gateway.logs.filter(
    (l) => l.msg === 'CONNECT allowed' && l['permission_id'] === g.permissionId,
  );
  assert.deepEqual(
    allows.map((l) => l['policy_cache']),
    [undefined, undefined, undefined],
  );
});

test('a revocation with plain SQL closes the open tunnels at the next periodic re-check', {
  timeout: 30_000,
}, async () => {
  const g = await live.granted();
  const tunnels = await live.openBoth(g);
  await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
  await live.expectClosed(g, tunnels, 'revoked', /^permission_revoked: /);
});

test("the permission's not_after closes the tunnel at its end", { timeout: 30_000 }, async () => {
  const g = await live.granted({ notAfterSql: "now() + interval '2 seconds'" });
  const tunnels = await live.openBoth(g);
  await live.expectClosed(g, tunnels, 'expired', /^permission_expired/);
});
