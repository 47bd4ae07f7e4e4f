import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { type ClientTls, http1Connect, readAll } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import { startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import {
  createPrincipal,
  grantPermission,
  grantScope,
  isHighS,
  opensslSigner,
} from '../helpers/registry-rows.js';

/** Egress guard, openssl-made signatures and graceful shutdown, each against its own gateway process. */
describe('gateway lifecycle and guards', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let tls: ClientTls;
  let destination: string;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    echo = await startEchoServer();
    const agent = await pki.agent('agent-beta');
    tls = { caPath: pki.caCertPath, agent };
    destination = `127.0.0.1:${echo.port}`;
    const principal = await createPrincipal(db.sql, 'org-openssl');
    await grantScope(db.sql, principal.keyId, destination);
    // Signed by `openssl dgst -sha256 -sign`, retried until s > n/2: high-S must be accepted.
    let highS = false;
    await grantPermission(db.sql, {
      permissionId: 'perm-openssl-high-s',
      principal,
      identity: 'agent-beta',
      agentSpki: agent.spkiDer,
      destination,
      signer: async (bytes) => {
        const sig = await opensslSigner(principal, { requireHighS: true })(bytes);
        highS = isHighS(sig);
        return sig;
      },
    });
    assert.ok(highS, 'the stored signature is high-S');
  });

  after(async () => {
    await echo?.close();
    await db?.drop();
    await pki?.cleanup();
  });

  const config = (allowCidrs: string[], extraEgress = '', extraServer = '') =>
    writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      allowCidrs,
      extraEgress,
      extraServer,
    });

  test('a permission signed by openssl with a high-S signature is honoured', async () => {
    const gateway = await startGatewayProcess(await config(['127.0.0.0/8']));
    try {
      const res = await http1Connect(gateway.port, tls, destination);
      assert.equal(res.status, 200);
      const reply = readAll(res.socket, res.rest);
      res.socket.end('high-s');
      assert.equal((await reply).toString(), 'high-s');
      const allowed = await gateway.waitForLog((l) => l.msg === 'CONNECT allowed');
      assert.equal(allowed['permission_id'], 'perm-openssl-high-s');
    } finally {
      assert.equal(await gateway.stop(), 0);
    }
  });

  test('egress guard: loopback is refused unless allow_cidrs covers it; deny_cidrs always wins', async () => {
    for (const [allow, extra] of [
      [[], ''],
      [['127.0.0.0/8'], 'deny_cidrs = ["127.0.0.1/32"]'],
    ] as const) {
      const gateway = await startGatewayProcess(await config([...allow], extra));
      try {
        const res = await http1Connect(gateway.port, tls, destination);
        assert.equal(res.status, 403);
        res.socket.destroy();
        const denied = await gateway.waitForLog((l) => l.msg === 'CONNECT denied');
        assert.equal(denied['deny_reason'], 'egress_refused');
        assert.equal(denied['source_identity'], 'agent-beta');
      } finally {
        assert.equal(await gateway.stop(), 0);
      }
    }
  });

  test('SIGTERM: stops accepting, lets the open tunnel finish, exits 0', async () => {
    const gateway = await startGatewayProcess(await config(['127.0.0.0/8']));
    const res = await http1Connect(gateway.port, tls, destination);
    assert.equal(res.status, 200);
    gateway.child.kill('SIGTERM');
    await gateway.waitForLog((l) => l.msg === 'shutdown started');
    const refused = await new Promise<string>((resolve) => {
      const s = netConnect(gateway.port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve('connected');
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    assert.equal(refused, 'ECONNREFUSED');
    const reply = readAll(res.socket, res.rest);
    res.socket.end('still flowing during the drain');
    assert.equal((await reply).toString(), 'still flowing during the drain');
    assert.equal(await gateway.exited, 0);
    const done = await gateway.waitForLog((l) => l.msg === 'shutdown complete');
    assert.equal(done['result'], 'drained');
  });

  test('a stalled handshake and a request head that never completes are dropped', async () => {
    const gateway = await startGatewayProcess(
      await config(['127.0.0.0/8'], '', 'handshake_timeout_ms = 300\nrequest_timeout_ms = 300'),
    );
    try {
      // TCP only, no ClientHello: dropped by the handshake timeout.
      const silent = netConnect(gateway.port, '127.0.0.1');
      silent.on('error', () => {});
      await new Promise((resolve) => silent.once('close', resolve));
      await gateway.waitForLog((l) => l.msg === 'TLS handshake failed');

      // TLS done, then half a CONNECT head and silence: dropped by the request timeout.
      const before = gateway.logs.length;
      const partial = tlsConnect({
        host: '127.0.0.1',
        port: gateway.port,
        ca: readFileSync(pki.caCertPath),
        cert: readFileSync(tls.agent!.certPath),
        key: readFileSync(tls.agent!.keyPath),
        servername: 'localhost',
        ALPNProtocols: ['http/1.1'],
      });
      partial.on('error', () => {});
      partial.once('secureConnect', () => partial.write(`CONNECT ${destination} HTTP/1.1\r\nHost: x`));
      const answer = await readAll(partial).catch(() => Buffer.alloc(0));
      assert.equal(answer.length, 0, 'no response to an incomplete head');
      const timedOut = await gateway.waitForLog(
        (l) => l.msg === 'request timeout' && gateway.logs.indexOf(l) >= before,
      );
      assert.equal(timedOut['source_identity'], 'agent-beta');
    } finally {
      assert.equal(await gateway.stop(), 0);
    }
  });
});
