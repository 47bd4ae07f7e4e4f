import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { readAll } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { closedPort, startEchoServer, startHttpServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import {
  proxyConnect,
  type SidecarProcess,
  sidecarArgs,
  startSidecarProcess,
} from '../helpers/sidecar-process.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

/**
 * The sidecar when things go wrong or are locked down: the gateway restarting under it, a required
 * local credential, and SIGTERM with a tunnel still open. The gateway listens on a fixed port here
 * so that a restarted gateway is found where the sidecar expects it.
 */
describe('sidecar resilience', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let gateway: GatewayProcess | undefined;
  let configPath: string;
  let gatewayPort: number;
  let alpha: TestAgent;
  let echo: { port: number; close(): Promise<void> };
  let http: { port: number; close(): Promise<void> };
  const sidecars: SidecarProcess[] = [];

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    echo = await startEchoServer();
    http = await startHttpServer('resilience');
    alpha = await pki.agent('agent-alpha');
    await grantLoopbackPorts(db.sql, {
      identity: 'agent-alpha',
      agentSpki: alpha.spkiDer,
      ports: [echo.port, http.port],
    });
    gatewayPort = await closedPort();
    configPath = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
    });
    const text = await readFile(configPath, 'utf8');
    await writeFile(
      configPath,
      text.replace('listen_addr = "127.0.0.1:0"', `listen_addr = "127.0.0.1:${gatewayPort}"`),
    );
    gateway = await startGatewayProcess(configPath);
    assert.equal(gateway.port, gatewayPort);
  });

  after(async () => {
    for (const s of sidecars) await s.stop();
    await gateway?.stop();
    await echo?.close();
    await http?.close();
    await db?.drop();
    await pki?.cleanup();
  });

  async function sidecar(
    extra: readonly string[] = [],
    env: NodeJS.ProcessEnv = {},
  ): Promise<SidecarProcess> {
    const s = await startSidecarProcess(
      sidecarArgs({ gateway: `localhost:${gatewayPort}`, caPath: pki.caCertPath, agent: alpha }, extra),
      env,
    );
    sidecars.push(s);
    return s;
  }

  async function echoThrough(port: number, text: string, headers: Record<string, string> = {}) {
    const t = await proxyConnect({ port }, `127.0.0.1:${echo.port}`, headers);
    if (t.status !== 200) {
      return { status: t.status, body: (await readAll(t.socket, t.head)).toString(), headers: t.headers };
    }
    const reply = readAll(t.socket, t.head);
    t.socket.end(text);
    return { status: 200, body: (await reply).toString(), headers: t.headers };
  }

  test('gateway restarted while the sidecar runs: 502 while it is down, then tunnels work again', async () => {
    const s = await sidecar();
    assert.deepEqual(await echoThrough(s.port, 'before'), { status: 200, body: 'before', headers: {} });

    assert.equal(await gateway?.stop(), 0);
    gateway = undefined;
    const down = await echoThrough(s.port, 'while down');
    assert.equal(down.status, 502);
    assert.match(down.body, /^sidecar: cannot reach the agent-gateway at localhost:\d+: connection refused/);

    gateway = await startGatewayProcess(configPath);
    const again = await echoThrough(s.port, 'after restart');
    assert.equal(again.status, 200, again.body);
    assert.equal(again.body, 'after restart');
    const connected = s.logs.filter((l) => l.msg === 'gateway connected');
    assert.equal(connected.length, 2, 'one connection before the restart, one after');
    assert.ok(s.logs.some((l) => l.msg === 'gateway disconnected'));
  });

  test('a required proxy credential is enforced: 407 without or with a wrong one', async () => {
    const s = await sidecar(['--proxy-auth-env', 'SIDECAR_AUTH'], { SIDECAR_AUTH: 'agent:s3cret' });
    const basic = (cred: string) => ({
      'proxy-authorization': `Basic ${Buffer.from(cred).toString('base64')}`,
    });

    const none = await echoThrough(s.port, 'x');
    assert.equal(none.status, 407);
    assert.match(String(none.headers['proxy-authenticate']), /^Basic realm="agent-gateway-sidecar"/);
    assert.equal((await echoThrough(s.port, 'x', basic('agent:wrong'))).status, 407);
    assert.equal((await echoThrough(s.port, 'x', basic('other:s3cret'))).status, 407);
    assert.deepEqual((await echoThrough(s.port, 'let me in', basic('agent:s3cret'))).body, 'let me in');

    // Clients take the credential from the proxy URL: HTTPS_PROXY=http://user:password@host:port.
    const curl = (proxy: string) =>
      new Promise<{ code: number; stdout: string }>((resolve) => {
        execFile(
          'curl',
          ['-sS', '--max-time', '20', '-w', '\n%{http_code}', `http://127.0.0.1:${http.port}/authorized`],
          { encoding: 'utf8', env: { PATH: process.env['PATH'], http_proxy: proxy, NO_PROXY: '' } },
          (error, stdout) => resolve({ code: error ? 1 : 0, stdout }),
        );
      });
    const withCredential = await curl(`http://agent:s3cret@127.0.0.1:${s.port}`);
    assert.equal(withCredential.stdout, 'hello from resilience /authorized\n\n200');
    const without = await curl(`http://127.0.0.1:${s.port}`);
    assert.match(without.stdout, /\n407$/);
  });

  test('SIGTERM: the sidecar stops accepting, lets an open tunnel finish, then exits 0', async () => {
    const s = await sidecar(['--shutdown-grace-s', '30']);
    const t = await proxyConnect({ port: s.port }, `127.0.0.1:${echo.port}`);
    assert.equal(t.status, 200);
    const reply = readAll(t.socket, t.head);
    t.socket.write('sent before SIGTERM, ');
    s.child.kill('SIGTERM');
    await s.waitForLog((l) => l.msg === 'shutdown started');
    await assert.rejects(proxyConnect({ port: s.port }, `127.0.0.1:${echo.port}`), /ECONNREFUSED/);
    t.socket.end('and after');
    assert.equal((await reply).toString(), 'sent before SIGTERM, and after');
    assert.equal(await s.exited, 0);
    const complete = await s.waitForLog((l) => l.msg === 'shutdown complete');
    assert.equal(complete['tunnels_cut'], 0);
  });
});
