import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { roundTrip } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import type { GatewayProcess, LogLine } from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import { createPrincipal, grantPermission, grantScope } from '../helpers/registry-rows.js';
import { startTestGateway } from '../helpers/sidecar-destinations.js';
import {
  proxyConnect,
  type SidecarProcess,
  sidecarArgs,
  startSidecarProcess,
} from '../helpers/sidecar-process.js';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/**
 * SIGHUP makes the sidecar present a rotated agent certificate and key: new tunnels go over a new gateway
 * connection that presents the new key (the gateway's CONNECT allowed line names its SPKI), the tunnel
 * opened before keeps flowing over the old connection, which is closed once that tunnel ends. An unusable
 * replacement keeps the credentials in force and says why.
 */
describe('sidecar credentials rotation on SIGHUP', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let gateway: GatewayProcess;
  let sidecar: SidecarProcess;
  let oldAgent: TestAgent;
  let newAgent: TestAgent;
  let certPath: string;
  let keyPath: string;
  let destination: string;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    echo = await startEchoServer();
    destination = `127.0.0.1:${echo.port}`;
    // The same identity with two keys, each with its own permission, as during a key rotation.
    oldAgent = await pki.agent('agent-rotating');
    newAgent = await pki.agent('agent-rotating');
    const principal = await createPrincipal(db.sql, 'org-rotation');
    await grantScope(db.sql, principal.keyId, destination);
    for (const [i, agent] of [oldAgent, newAgent].entries()) {
      await grantPermission(db.sql, {
        permissionId: `perm-rotating-${i}`,
        principal,
        identity: 'agent-rotating',
        agentSpki: agent.spkiDer,
        destination,
      });
    }
    gateway = await startTestGateway(pki, db.url);
    certPath = join(pki.dir, 'sidecar-agent.pem');
    keyPath = join(pki.dir, 'sidecar-agent-key.pem');
    await copyFile(oldAgent.certPath, certPath);
    await copyFile(oldAgent.keyPath, keyPath);
    sidecar = await startSidecarProcess(
      sidecarArgs(
        { gateway: `127.0.0.1:${gateway.port}`, caPath: pki.caCertPath, agent: { certPath, keyPath } },
        ['--gateway-server-name', 'localhost'],
      ),
    );
  });

  after(async () => {
    const sidecarCode = await sidecar?.stop();
    const gatewayCode = await gateway?.stop();
    await echo?.close();
    await db?.drop();
    await pki?.cleanup();
    assert.equal(sidecarCode, 0, `sidecar exit code; stderr: ${sidecar?.stderr()}`);
    assert.equal(gatewayCode, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  /** A tunnel through the sidecar, and the key (SPKI fingerprint) the gateway allowed it for. */
  async function tunnel(): Promise<{ socket: Duplex; spki: string }> {
    const mark = gateway.logs.length;
    const t = await proxyConnect({ port: sidecar.port }, destination);
    assert.equal(t.status, 200);
    const allowed = await gateway.waitForLog(
      (l) => gateway.logs.indexOf(l) >= mark && l.msg === 'CONNECT allowed',
    );
    return { socket: t.socket, spki: String(allowed['spki_sha256']) };
  }

  async function hangUp(): Promise<LogLine> {
    const mark = sidecar.logs.length;
    sidecar.child.kill('SIGHUP');
    return sidecar.waitForLog(
      (l) => sidecar.logs.indexOf(l) >= mark && l.msg.startsWith('credentials reload'),
    );
  }

  test('new tunnels present the new key at once; the open tunnel keeps flowing on the old connection', async () => {
    const before = await tunnel();
    assert.equal(before.spki, sha256(oldAgent.spkiDer));
    assert.equal(await roundTrip(before.socket, 'before'), 'before');

    await writeFile(certPath, newAgent.certPem);
    await writeFile(keyPath, newAgent.keyPem, { mode: 0o600 });
    const connectedBefore = sidecar.logs.filter((l) => l.msg === 'gateway connected').length;
    const reloaded = await hangUp();
    assert.equal(reloaded.msg, 'credentials reloaded', JSON.stringify(reloaded));
    assert.equal(reloaded['changed'], true);
    assert.equal(reloaded['gateway_connection'], 'replaced');
    assert.equal(reloaded['source_identity'], 'agent-rotating');
    assert.equal(
      sidecar.logs.filter((l) => l.msg === 'gateway connected').length,
      connectedBefore + 1,
      'a new connection, opened at once',
    );

    const after = await tunnel();
    assert.equal(after.spki, sha256(newAgent.spkiDer), 'the new tunnel is allowed for the new key');
    assert.equal(await roundTrip(after.socket, 'after'), 'after');
    // The tunnel from before the reload: bytes both ways, on the old connection.
    assert.equal(
      await roundTrip(before.socket, 'old tunnel after the reload'),
      'old tunnel after the reload',
    );
    assert.ok(
      !sidecar.logs.some((l) => l.msg === 'gateway disconnected'),
      'the old connection stays while it carries a tunnel',
    );
    // Its last tunnel ends: the old connection goes.
    const mark = sidecar.logs.length;
    before.socket.end();
    const gone = await sidecar.waitForLog(
      (l) => sidecar.logs.indexOf(l) >= mark && l.msg === 'gateway disconnected',
    );
    assert.equal(gone['reason'], 'replaced: new credentials');
    assert.equal(await roundTrip(after.socket, 'still'), 'still');
    after.socket.end();
  });

  test('an unusable replacement keeps the credentials in force and names the problem', async () => {
    // The new certificate with the old key: a half-finished rotation.
    await writeFile(keyPath, oldAgent.keyPem, { mode: 0o600 });
    const failed = await hangUp();
    assert.equal(failed.msg, 'credentials reload failed', JSON.stringify(failed));
    assert.match(String((failed['problems'] as string[])[0]), /does not match the private key/);
    const t = await tunnel();
    assert.equal(t.spki, sha256(newAgent.spkiDer));
    assert.equal(await roundTrip(t.socket, 'kept'), 'kept');
    t.socket.end();
    await writeFile(keyPath, newAgent.keyPem, { mode: 0o600 });
    const fixed = await hangUp();
    assert.equal(fixed.msg, 'credentials reloaded');
    assert.equal(fixed['changed'], false, 'what is on disk now is what it presents');
  });
});
