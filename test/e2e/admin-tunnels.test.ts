import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../helpers/cli-runner.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { closed, echoes, LiveTunnels } from '../helpers/live-tunnels.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

/**
 * Issue 12 §5: the admin listener (health and readiness without a credential, everything else with the
 * bearer token from the environment) and `agent-gateway tunnels list|close`, the kill switch that closes
 * an identity's tunnels without revoking anything; plus server.max_tunnel_lifetime_s.
 */
const ADMIN = 'a'.repeat(32);
const READER = 'r'.repeat(32);
let pki: TestPki;
let db: FreshDatabase;
let gateway: GatewayProcess;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let live: LiveTunnels;
let adminUrl: string;

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  echo = await startEchoServer();
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraTables: '[admin]\nlisten_addr = "127.0.0.1:0"\nreadonly_token_env = "TEST_READ_TOKEN"',
    }),
    { AGENT_GATEWAY_ADMIN_TOKEN: ADMIN, TEST_READ_TOKEN: READER },
  );
  const line = await gateway.waitForLog((l) => l.msg === 'admin listening', 'admin listening');
  adminUrl = `http://${String(line['admin_addr'])}`;
  live = new LiveTunnels(
    pki,
    () => db.sql,
    `127.0.0.1:${echo.port}`,
    () => gateway,
    'admin',
  );
});

after(async () => {
  await gateway?.stop();
  await echo?.close();
  await db?.drop();
  await pki?.cleanup();
});

const cli = (args: string[], token = ADMIN) =>
  runCli(['tunnels', ...args, '--admin-url', adminUrl], { env: { AGENT_GATEWAY_ADMIN_TOKEN: token } });

describe('admin listener', { timeout: 30_000 }, () => {
  test('/healthz and /readyz answer without a credential; readiness lists its checks', async () => {
    const health = await fetch(`${adminUrl}/healthz`);
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: 'ok' });
    await gateway.waitForLog((l) => l.msg === 'live check healthy', 'live check');
    const ready = await fetch(`${adminUrl}/readyz`);
    const body = (await ready.json()) as { ready: boolean; checks: Array<{ name: string; ok: boolean }> };
    assert.equal(ready.status, 200, JSON.stringify(body));
    assert.equal(body.ready, true);
    assert.deepEqual(
      body.checks.map((c) => [c.name, c.ok]),
      [
        ['listening', true],
        ['draining', true],
        ['registry', true],
        ['live_check', true],
      ],
    );
  });

  test('everything else needs the token: none or a wrong one is 401 with a stable code', async () => {
    for (const auth of [undefined, 'Bearer wrong-token-wrong-token-wrong', `Basic ${ADMIN}`]) {
      const res = await fetch(
        `${adminUrl}/v1/tunnels`,
        auth === undefined ? {} : { headers: { authorization: auth } },
      );
      assert.equal(res.status, 401);
      assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'ADMIN_UNAUTHORIZED');
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer /);
    }
    const unknown = await fetch(`${adminUrl}/v1/nothing`, { headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(unknown.status, 404);
  });

  test('tunnels list shows open tunnels with their bytes; the read-only token may list but not close', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    const listed = await cli(['list', '--identity', g.identity, '--json'], READER);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as Array<Record<string, unknown>>;
    assert.deepEqual(rows.map((r) => r['protocol']).sort(), ['HTTP/1.1', 'HTTP/2']);
    for (const row of rows) {
      assert.equal(row['source_identity'], g.identity);
      assert.equal(row['permission_id'], g.permissionId);
      assert.equal(row['bytes_client_to_dest'], 1, 'the echo byte');
    }
    const table = await cli(['list'], READER);
    assert.match(table.stdout, /^TUNNEL +IDENTITY +DESTINATION/);
    assert.ok(table.stdout.includes(g.identity));

    const refused = await cli(['close', '--identity', g.identity], READER);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /\[ADMIN_FORBIDDEN\]/);
    await echoes(tunnels.h1);
    tunnels.h1.destroy();
    tunnels.h2.close();
  });

  test("tunnels close --identity ends that identity's tunnels on both protocols, and only those", async () => {
    const keep = await live.granted();
    const kept = await live.openBoth(keep);
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    const result = await cli(['close', '--identity', g.identity]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'closed: 2\n');
    const lines = await live.expectClosed(
      g,
      tunnels,
      'operator',
      /closed by an operator \(admin token from 127\.0\.0\.1:\d+\): identity/,
    );
    assert.equal(lines.length, 2);
    const action = await gateway.waitForLog((l) => l.msg === 'operator action', 'operator action');
    assert.equal(action['action'], 'tunnels close');
    assert.equal(action['operator_role'], 'admin');
    assert.deepEqual(action['target'], { identity: g.identity });
    assert.deepEqual(action['result'], { closed: 2 });
    // Nothing was revoked: the agent may open a tunnel again at once.
    const again = await live.openBoth(g);
    again.h1.destroy();
    again.h2.close();
    await echoes(kept.h1);
    await echoes(kept.h2);
    kept.h1.destroy();
    kept.h2.close();
  });

  test('tunnels close by permission and by signing key, and bad selectors', async () => {
    const a = await live.granted();
    const ta = await live.openBoth(a);
    assert.equal((await cli(['close', '--permission-id', a.permissionId])).stdout, 'closed: 2\n');
    await Promise.all([closed(ta.h1), closed(ta.h2)]);
    const b = await live.granted();
    const tb = await live.openBoth(b);
    assert.equal((await cli(['close', '--signing-key-id', b.principal.keyId])).stdout, 'closed: 2\n');
    await Promise.all([closed(tb.h1), closed(tb.h2)]);
    const none = await cli(['close']);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /give exactly one of --identity/);
    const nothing = await cli(['close', '--identity', 'nobody']);
    assert.equal(nothing.stdout, 'closed: 0\n');
    const noToken = await runCli(['tunnels', 'list', '--admin-url', adminUrl], {
      env: { AGENT_GATEWAY_ADMIN_TOKEN: '' },
    });
    assert.equal(noToken.code, 2);
    assert.match(noToken.stderr, /AGENT_GATEWAY_ADMIN_TOKEN is not set/);
  });
});

test('server.max_tunnel_lifetime_s closes a tunnel that outlives it', { timeout: 30_000 }, async () => {
  const short = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraServer: 'max_tunnel_lifetime_s = 1',
    }),
  );
  try {
    const fixture = new LiveTunnels(
      pki,
      () => db.sql,
      `127.0.0.1:${echo.port}`,
      () => short,
      'lifetime',
    );
    const g = await fixture.granted();
    const tunnels = await fixture.openBoth(g);
    await fixture.expectClosed(g, tunnels, 'max_lifetime', /server\.max_tunnel_lifetime_s \(1 s\)/);
  } finally {
    await short.stop();
  }
});
