import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { http1Connect } from '../helpers/clients.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { echoes, LiveTunnels } from '../helpers/live-tunnels.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { createPrincipal } from '../helpers/registry-rows.js';

/**
 * Issue 12: an open tunnel stays authorized for its whole life. Every change here is made with plain SQL,
 * as an operator of the original gateway would (or any tool): the gateway must close the open HTTP/1.1
 * and HTTP/2 tunnels the change invalidates, and log `tunnel closed` with close cause `revoked` or
 * `expired` and the precise reason. The registry has the agent_gateway_ext extension (freshDatabase
 * migrates it), so notifications drive the re-check; test/e2e/live-revocation-polling.test.ts covers a
 * registry without it.
 */
let pki: TestPki;
let db: FreshDatabase;
let gateway: GatewayProcess;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let destination: string;
let live: LiveTunnels;

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  echo = await startEchoServer();
  destination = `127.0.0.1:${echo.port}`;
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
    }),
  );
  await gateway.waitForLog((l) => l.msg === 'live check healthy' && l['mode'] === 'listening', 'listening');
  live = new LiveTunnels(
    pki,
    () => db.sql,
    destination,
    () => gateway,
  );
});

after(async () => {
  await gateway?.stop();
  await echo?.close();
  await db?.drop();
  await pki?.cleanup();
});

describe('a change made with plain SQL closes the open tunnels it invalidates', { timeout: 30_000 }, () => {
  test('the permission is revoked', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^permission_revoked: /);
  });

  test('the permission row is deleted', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await db.sql`DELETE FROM permission_registry WHERE permission_id = ${g.permissionId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^no_matching_permission: .*no longer exists/);
  });

  test('a signed field is edited, so the signature no longer verifies', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await db.sql`
      UPDATE permission_registry SET not_after = not_after + interval '1 day' WHERE permission_id = ${g.permissionId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^bad_signature: /);
  });

  test('its signer is revoked', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await db.sql`UPDATE principal_signing_keys SET revoked_at = now() WHERE key_id = ${g.principal.keyId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^signer_revoked: /);
  });

  test("its signer's key is replaced", async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    const other = await createPrincipal(db.sql, `org-live-other-${g.permissionId}`);
    await db.sql`DELETE FROM principal_signing_keys WHERE key_id = ${other.keyId}`;
    await db.sql`
      UPDATE principal_signing_keys SET public_key_spki_der = ${other.spki} WHERE key_id = ${g.principal.keyId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^bad_signature: /);
  });

  test('its delegation scope is revoked', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await db.sql`
      UPDATE principal_key_permissions SET revoked_at = now() WHERE signing_key_id = ${g.principal.keyId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^scope_missing: /);
  });

  test("its delegation scope is narrowed so that it no longer covers the permission's window", async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await db.sql`
      UPDATE principal_key_permissions SET not_after = now() + interval '1 day'
      WHERE signing_key_id = ${g.principal.keyId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^scope_insufficient: /);
  });

  test('an unrelated change leaves other tunnels alone', async () => {
    const keep = await live.granted();
    const kept = await live.openBoth(keep);
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^permission_revoked: /);
    // The kept tunnels were re-checked too (the same notification) and still carry bytes.
    await echoes(kept.h1);
    await echoes(kept.h2);
    kept.h1.destroy();
    kept.h2.close();
  });
});

describe('the end of a window closes the tunnel', { timeout: 30_000 }, () => {
  test("the permission's not_after passes", async () => {
    const g = await live.granted({ notAfterSql: "now() + interval '3 seconds'" });
    const tunnels = await live.openBoth(g);
    await live.expectClosed(g, tunnels, 'expired', /^permission_expired/);
  });

  test("the signer's not_after passes first", async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    // Shortened with SQL after admission: the next re-check moves the tunnels' deadline.
    await db.sql`
      UPDATE principal_signing_keys SET not_after = now() + interval '3 seconds' WHERE key_id = ${g.principal.keyId}`;
    await live.expectClosed(g, tunnels, 'expired', /^signer_expired/);
  });
});

describe('the listener', { timeout: 30_000 }, () => {
  test('its backend is terminated and revocations made during the gap still close their tunnels', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    const before = gateway.logs.length;
    const [killed] = await db.sql<{ n: number }[]>`
      SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE application_name = 'agent-gateway-listener' AND datname = current_database()`;
    assert.equal(killed?.n, 1, 'the listener had its own backend');
    // Sent while the listener may be reconnecting: the notification can be lost, the re-check is not.
    await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
    await live.expectClosed(g, tunnels, 'revoked', /^permission_revoked: /);
    // The operator is told that notifications stopped, and again when they are back.
    const since = (l: { msg: string }) => gateway.logs.indexOf(l as never) >= before;
    await gateway.waitForLog(
      (l) => l.msg === 'live check healthy' && l['mode'] === 'polling' && since(l),
      'polling',
    );
    await gateway.waitForLog(
      (l) => l.msg === 'live check healthy' && l['mode'] === 'listening' && since(l),
      'listening again',
    );
  });
});

describe('the decision cache (on by default)', { timeout: 30_000 }, () => {
  test('an allow it holds is gone once a revocation is announced: the next CONNECT is refused', async () => {
    const g = await live.granted();
    const tunnels = await live.openBoth(g);
    // A third CONNECT for the same identity, key and destination is answered from the cache.
    const third = await http1Connect(gateway.port, g.tls, live.destination);
    assert.equal(third.status, 200);
    const thirdPeer = `127.0.0.1:${third.socket.localPort}`;
    third.socket.destroy();
    const hit = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT allowed' && l['source_peer_addr'] === thirdPeer,
      'the third allow',
    );
    assert.equal(hit['permission_id'], g.permissionId);
    assert.equal(hit['policy_cache'], 'hit', 'answered from the decision cache');
    await gateway.waitForLog(
      (l) => l.msg === 'tunnel closed' && l['tunnel_id'] === hit['tunnel_id'],
      'the third tunnel closed',
    );
    const revokedAt = gateway.logs.length;
    await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
    // The open tunnels closing proves the notification arrived; it cleared the cache before the re-check.
    await live.expectClosed(g, tunnels, 'revoked', /^permission_revoked: /, revokedAt);
    const after = await http1Connect(gateway.port, g.tls, live.destination);
    assert.equal(after.status, 403);
    after.socket.destroy();
  });
});
