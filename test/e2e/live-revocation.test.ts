import assert from 'node:assert/strict';
import type { ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { type ClientTls, h2Connect, h2Session, http1Connect } from '../helpers/clients.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import {
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { createPrincipal, grantPermission, grantScope, type Principal } from '../helpers/registry-rows.js';

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
let counter = 0;

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
});

after(async () => {
  await gateway?.stop();
  await echo?.close();
  await db?.drop();
  await pki?.cleanup();
});

interface Granted {
  readonly permissionId: string;
  readonly principal: Principal;
  readonly tls: ClientTls;
}

/** A fresh principal (with a scope for the destination), agent and permission: nothing shared between tests. */
async function granted(window: { notBeforeSql?: string; notAfterSql?: string } = {}): Promise<Granted> {
  const n = ++counter;
  const principal = await createPrincipal(db.sql, `org-live-${n}`);
  await grantScope(db.sql, principal.keyId, destination);
  const identity = `agent-live-${n}`;
  const agent = await pki.agent(identity);
  const permissionId = `perm-live-${n}`;
  await grantPermission(db.sql, {
    permissionId,
    principal,
    identity,
    agentSpki: agent.spkiDer,
    destination,
    ...window,
  });
  return { permissionId, principal, tls: { caPath: pki.caCertPath, agent } };
}

/** Resolves once `stream` has closed. */
function closed(stream: Duplex): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed) resolve();
    stream.once('close', () => resolve());
    stream.on('error', () => {});
  });
}

/** One byte there and back: the tunnel carries data. */
async function echoes(stream: Duplex): Promise<void> {
  const got = new Promise<Buffer>((resolve) => stream.once('data', (b: Buffer) => resolve(b)));
  // http1Connect hands the socket over paused (an explicit pause is not undone by a listener).
  stream.resume();
  stream.write('p');
  assert.equal((await got).toString(), 'p');
}

/** An open, working tunnel over each protocol for `g`. */
async function openBoth(g: Granted): Promise<{ h1: Duplex; h2: ClientHttp2Stream }> {
  const one = await http1Connect(gateway.port, g.tls, destination);
  assert.equal(one.status, 200);
  assert.equal(one.rest.length, 0);
  await echoes(one.socket);
  const session = await h2Session(gateway.port, g.tls);
  const two = await h2Connect(session, destination);
  assert.equal(two.status, 200);
  await echoes(two.stream);
  // The session ends with the test's tunnel; closing it afterwards is the client's business.
  two.stream.once('close', () => session.close());
  return { h1: one.socket, h2: two.stream };
}

/** Both tunnels close and both `tunnel closed` lines name the cause and reason. */
async function expectClosed(
  g: Granted,
  tunnels: { h1: Duplex; h2: ClientHttp2Stream },
  cause: string,
  reason: RegExp,
): Promise<void> {
  await Promise.all([closed(tunnels.h1), closed(tunnels.h2)]);
  const lines: LogLine[] = [];
  for (const protocol of ['HTTP/1.1', 'HTTP/2']) {
    lines.push(
      await gateway.waitForLog(
        (l) =>
          l.msg === 'tunnel closed' && l['permission_id'] === g.permissionId && l['protocol'] === protocol,
        `tunnel closed for ${g.permissionId} over ${protocol}`,
      ),
    );
  }
  for (const line of lines) {
    assert.equal(line['close_cause'], cause, JSON.stringify(line));
    assert.match(String(line['close_reason']), reason);
    assert.equal(line['level'], cause === 'revoked' ? 'warn' : 'info');
  }
}

describe('a change made with plain SQL closes the open tunnels it invalidates', { timeout: 30_000 }, () => {
  test('the permission is revoked', async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
    await expectClosed(g, tunnels, 'revoked', /^permission_revoked: /);
  });

  test('the permission row is deleted', async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`DELETE FROM permission_registry WHERE permission_id = ${g.permissionId}`;
    await expectClosed(g, tunnels, 'revoked', /^no_matching_permission: .*no longer exists/);
  });

  test('a signed field is edited, so the signature no longer verifies', async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`
      UPDATE permission_registry SET not_after = not_after + interval '1 day' WHERE permission_id = ${g.permissionId}`;
    await expectClosed(g, tunnels, 'revoked', /^bad_signature: /);
  });

  test('its signer is revoked', async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`UPDATE principal_signing_keys SET revoked_at = now() WHERE key_id = ${g.principal.keyId}`;
    await expectClosed(g, tunnels, 'revoked', /^signer_revoked: /);
  });

  test("its signer's key is replaced", async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    const other = await createPrincipal(db.sql, `org-live-other-${++counter}`);
    await db.sql`DELETE FROM principal_signing_keys WHERE key_id = ${other.keyId}`;
    await db.sql`
      UPDATE principal_signing_keys SET public_key_spki_der = ${other.spki} WHERE key_id = ${g.principal.keyId}`;
    await expectClosed(g, tunnels, 'revoked', /^bad_signature: /);
  });

  test('its delegation scope is revoked', async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`
      UPDATE principal_key_permissions SET revoked_at = now() WHERE signing_key_id = ${g.principal.keyId}`;
    await expectClosed(g, tunnels, 'revoked', /^scope_missing: /);
  });

  test("its delegation scope is narrowed so that it no longer covers the permission's window", async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`
      UPDATE principal_key_permissions SET not_after = now() + interval '1 day'
      WHERE signing_key_id = ${g.principal.keyId}`;
    await expectClosed(g, tunnels, 'revoked', /^scope_insufficient: /);
  });

  test('an unrelated change leaves other tunnels alone', async () => {
    const keep = await granted();
    const kept = await openBoth(keep);
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
    await expectClosed(g, tunnels, 'revoked', /^permission_revoked: /);
    // The kept tunnels were re-checked too (the same notification) and still carry bytes.
    await echoes(kept.h1);
    await echoes(kept.h2);
    kept.h1.destroy();
    kept.h2.close();
  });
});

describe('the end of a window closes the tunnel', { timeout: 30_000 }, () => {
  test("the permission's not_after passes", async () => {
    const g = await granted({ notAfterSql: "now() + interval '3 seconds'" });
    const tunnels = await openBoth(g);
    await expectClosed(g, tunnels, 'expired', /^permission_expired/);
  });

  test("the signer's not_after passes first", async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    // Shortened with SQL after admission: the next re-check moves the tunnels' deadline.
    await db.sql`
      UPDATE principal_signing_keys SET not_after = now() + interval '3 seconds' WHERE key_id = ${g.principal.keyId}`;
    await expectClosed(g, tunnels, 'expired', /^signer_expired/);
  });
});

describe('the listener', { timeout: 30_000 }, () => {
  test('its backend is terminated and revocations made during the gap still close their tunnels', async () => {
    const g = await granted();
    const tunnels = await openBoth(g);
    await db.sql`
      SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE application_name = 'agent-gateway-listener' AND datname = current_database()`;
    // Sent while the listener may be reconnecting: the notification can be lost, the re-check is not.
    await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${g.permissionId}`;
    await expectClosed(g, tunnels, 'revoked', /^permission_revoked: /);
    await gateway.waitForLog(
      (l) => l.msg === 'live check healthy' && l['mode'] === 'listening' && gateway.logs.indexOf(l) > 0,
      'listening again',
    );
  });
});
