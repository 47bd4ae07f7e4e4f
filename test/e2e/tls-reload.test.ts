import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { copyFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { createServerCertificate, type IssuedCertificate } from '../../src/pki/certificates.js';
import { type ClientTls, h2Connect, h2Session, http1Connect, roundTrip } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import {
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

/** SHA-256 of a PEM certificate's DER, as `config reloaded` names it. */
const sha256Of = (pem: string) => createHash('sha256').update(new X509Certificate(pem).raw).digest('hex');

/** A new TLS connection to the gateway: the fingerprint of the certificate it was served. */
function servedCertificate(port: number, tls: ClientTls): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
      // Verified against the CA: both certificates are its, and both must pass as the agents see them.
      ca: readFileSync(tls.caPath),
      ...(tls.agent ? { cert: readFileSync(tls.agent.certPath), key: readFileSync(tls.agent.keyPath) } : {}),
    });
    socket.once('secureConnect', () => {
      const raw = socket.getPeerX509Certificate()?.raw;
      socket.destroy();
      if (raw === undefined) reject(new Error('no server certificate'));
      else resolve(createHash('sha256').update(raw).digest('hex'));
    });
    socket.once('error', reject);
  });
}

/**
 * SIGHUP rotates the gateway's server certificate: the next handshake gets the new one, tunnels that were
 * open keep flowing both ways on both protocols, and an unusable replacement keeps the certificate in
 * force and says why.
 */
describe('server certificate rotation on SIGHUP', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let gateway: GatewayProcess;
  let tls: ClientTls;
  let certPath: string;
  let keyPath: string;
  let rotated: IssuedCertificate;
  let destination: string;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    echo = await startEchoServer();
    const agent = await pki.agent('agent-rotation');
    tls = { caPath: pki.caCertPath, agent };
    destination = `127.0.0.1:${echo.port}`;
    await grantLoopbackPorts(db.sql, {
      identity: 'agent-rotation',
      agentSpki: agent.spkiDer,
      ports: [echo.port],
    });
    rotated = await createServerCertificate({
      ca: pki.ca,
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    // The gateway's own copies, so the test can replace them.
    certPath = join(pki.dir, 'gateway.pem');
    keyPath = join(pki.dir, 'gateway-key.pem');
    await copyFile(pki.serverCertPath, certPath);
    await copyFile(pki.serverKeyPath, keyPath);
    gateway = await startGatewayProcess(
      await writeGatewayConfig({ dir: pki.dir, databaseUrl: db.url, certPath, keyPath }),
    );
  });

  after(async () => {
    const code = await gateway?.stop();
    await echo?.close();
    await db?.drop();
    await pki?.cleanup();
    assert.equal(code, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  async function hangUp(): Promise<LogLine> {
    const mark = gateway.logs.length;
    gateway.child.kill('SIGHUP');
    return gateway.waitForLog((l) => gateway.logs.indexOf(l) >= mark && l.msg.startsWith('config reload'));
  }

  test('the next handshake gets the new certificate; open tunnels keep flowing both ways', async () => {
    assert.equal(await servedCertificate(gateway.port, tls), sha256Of(pki.server.certPem));
    const h1 = await http1Connect(gateway.port, tls, destination);
    assert.equal(h1.status, 200);
    const session = await h2Session(gateway.port, tls);
    try {
      const h2 = await h2Connect(session, destination);
      assert.equal(h2.status, 200);
      assert.equal(await roundTrip(h1.socket, 'h1 before'), 'h1 before');
      assert.equal(await roundTrip(h2.stream, 'h2 before'), 'h2 before');

      // In place, as most rotation tools do: same paths, new contents.
      await writeFile(certPath, rotated.certPem);
      await writeFile(keyPath, rotated.keyPem, { mode: 0o600 });
      const reloaded = await hangUp();
      assert.equal(reloaded.msg, 'config reloaded', JSON.stringify(reloaded));
      assert.equal(reloaded['tls_cert_replaced'], true);
      assert.equal(reloaded['tls_cert_sha256'], sha256Of(rotated.certPem));
      assert.equal(reloaded['ignored_until_restart'], undefined);

      assert.equal(await servedCertificate(gateway.port, tls), sha256Of(rotated.certPem));
      // The tunnels opened under the old certificate: bytes both ways after the reload.
      assert.equal(await roundTrip(h1.socket, 'h1 after the reload'), 'h1 after the reload');
      assert.equal(await roundTrip(h2.stream, 'h2 after the reload'), 'h2 after the reload');
      // A new CONNECT on the HTTP/2 connection from before the reload works too.
      const again = await h2Connect(session, destination);
      assert.equal(again.status, 200);
      assert.equal(await roundTrip(again.stream, 'new stream, old connection'), 'new stream, old connection');
      // And a tunnel on a connection made with the new certificate, verified against the CA.
      const fresh = await http1Connect(gateway.port, tls, destination);
      assert.equal(fresh.status, 200);
      assert.equal(await roundTrip(fresh.socket, 'new connection'), 'new connection');
      for (const s of [h1.socket, fresh.socket]) s.destroy();
    } finally {
      session.close();
    }
  });

  test('a replacement moved over the old file (rename) is picked up too', async () => {
    const staged = join(pki.dir, 'gateway.pem.new');
    await writeFile(staged, pki.server.certPem);
    const stagedKey = join(pki.dir, 'gateway-key.pem.new');
    await writeFile(stagedKey, pki.server.keyPem, { mode: 0o600 });
    await rename(stagedKey, keyPath);
    await rename(staged, certPath);
    const reloaded = await hangUp();
    assert.equal(reloaded.msg, 'config reloaded', JSON.stringify(reloaded));
    assert.equal(reloaded['tls_cert_sha256'], sha256Of(pki.server.certPem));
    assert.equal(await servedCertificate(gateway.port, tls), sha256Of(pki.server.certPem));
    // Nothing changed since: a SIGHUP leaves the certificate as it is.
    const again = await hangUp();
    assert.equal(again['tls_cert_replaced'], false);
  });

  test('an unusable replacement keeps the certificate in force and names the problem', async () => {
    const h1 = await http1Connect(gateway.port, tls, destination);
    assert.equal(h1.status, 200);
    // The rotated certificate with the key of the one in force: a half-finished rotation.
    await writeFile(certPath, rotated.certPem);
    const failed = await hangUp();
    assert.equal(failed.msg, 'config reload failed', JSON.stringify(failed));
    assert.match(
      String((failed['problems'] as string[])[0]),
      /^server\.tls_key_path: .* is not the private key of the certificate in /,
    );
    assert.equal(await servedCertificate(gateway.port, tls), sha256Of(pki.server.certPem));
    // Not PEM at all.
    await writeFile(certPath, 'not a certificate\n');
    const garbage = await hangUp();
    assert.equal(garbage.msg, 'config reload failed');
    assert.match(
      String((garbage['problems'] as string[])[0]),
      /^server\.tls_cert_path: .* is not a PEM certificate/,
    );
    assert.equal(await servedCertificate(gateway.port, tls), sha256Of(pki.server.certPem));
    assert.equal(await roundTrip(h1.socket, 'still open'), 'still open');
    h1.socket.destroy();
    // Put right: applied on the next SIGHUP.
    await writeFile(certPath, rotated.certPem);
    await writeFile(keyPath, rotated.keyPem, { mode: 0o600 });
    const fixed = await hangUp();
    assert.equal(fixed.msg, 'config reloaded');
    assert.equal(await servedCertificate(gateway.port, tls), sha256Of(rotated.certPem));
  });

  test('the admin listener, when it has TLS, rotates its certificate on the same SIGHUP', async () => {
    const adminCert = join(pki.dir, 'admin.pem');
    const adminKey = join(pki.dir, 'admin-key.pem');
    await copyFile(pki.serverCertPath, adminCert);
    await copyFile(pki.serverKeyPath, adminKey);
    const withAdmin = await startGatewayProcess(
      await writeGatewayConfig({
        dir: pki.dir,
        databaseUrl: db.url,
        certPath,
        keyPath,
        extraTables: [
          '[admin]',
          'listen_addr = "127.0.0.1:0"',
          `tls_cert_path = ${JSON.stringify(adminCert)}`,
          `tls_key_path = ${JSON.stringify(adminKey)}`,
        ].join('\n'),
      }),
      { AGENT_GATEWAY_ADMIN_TOKEN: 'a-token-of-at-least-32-characters-for-the-test' },
    );
    try {
      const listening = await withAdmin.waitForLog((l) => l.msg === 'admin listening');
      const adminPort = Number(String(listening['admin_addr']).split(':').pop());
      assert.equal(await servedCertificate(adminPort, tls), sha256Of(pki.server.certPem));
      await writeFile(adminCert, rotated.certPem);
      await writeFile(adminKey, rotated.keyPem, { mode: 0o600 });
      const mark = withAdmin.logs.length;
      withAdmin.child.kill('SIGHUP');
      const reloaded = await withAdmin.waitForLog(
        (l) => withAdmin.logs.indexOf(l) >= mark && l.msg.startsWith('config reload'),
      );
      assert.equal(reloaded.msg, 'config reloaded', JSON.stringify(reloaded));
      assert.equal(reloaded['admin_tls_cert_replaced'], true);
      assert.equal(reloaded['admin_tls_cert_sha256'], sha256Of(rotated.certPem));
      assert.equal(await servedCertificate(adminPort, tls), sha256Of(rotated.certPem));
    } finally {
      assert.equal(await withAdmin.stop(), 0);
    }
  });
});
