import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ProxyAgent } from 'undici';
import { hashAll, readAll } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { patternHash, writePattern } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { startLoopbackDestinations, startTestGateway } from '../helpers/sidecar-destinations.js';
import {
  proxyConnect,
  rawProxyRequest,
  type SidecarProcess,
  sidecarArgs,
  startSidecarProcess,
} from '../helpers/sidecar-process.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

const LARGE = 16 * 1024 * 1024;
const TUNNELS = 32;

/** Runs a client program to completion; resolves with its exit code and output, never rejects. */
function runClient(
  file: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { encoding: 'utf8', env: { PATH: process.env['PATH'], ...env } },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function hasPython(): Promise<boolean> {
  return (await runClient('python3', ['--version'], {})).code === 0;
}

/**
 * Agents' real HTTP clients behind the sidecar (the built CLI), which carries their tunnels over
 * one mTLS HTTP/2 connection to a real gateway with a PostgreSQL registry.
 */
describe('sidecar end to end', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let gateway: GatewayProcess;
  let sidecar: SidecarProcess;
  let dest: Awaited<ReturnType<typeof startLoopbackDestinations>>;
  let socketPath: string;
  let proxyUrl: string;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    dest = await startLoopbackDestinations(pki.dir, LARGE);
    const { https, http, echo, sink } = dest;
    const alpha = await pki.agent('agent-alpha');
    await grantLoopbackPorts(db.sql, {
      identity: 'agent-alpha',
      agentSpki: alpha.spkiDer,
      ports: [https.port, http.port, echo.port, sink.port],
    });
    gateway = await startTestGateway(pki, db.url);
    socketPath = join(pki.dir, 'sidecar.sock');
    sidecar = await startSidecarProcess(
      sidecarArgs({ gateway: `127.0.0.1:${gateway.port}`, caPath: pki.caCertPath, agent: alpha }, [
        '--gateway-server-name',
        'localhost',
        '--unix-socket',
        socketPath,
      ]),
    );
    proxyUrl = `http://127.0.0.1:${sidecar.port}`;
  });

  after(async () => {
    const sidecarCode = await sidecar?.stop();
    const gatewayCode = await gateway?.stop();
    await dest?.close();
    await db?.drop();
    await pki?.cleanup();
    assert.equal(sidecarCode, 0, `sidecar exit code; stderr: ${sidecar?.stderr()}`);
    assert.equal(gatewayCode, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  /** The gateway's `CONNECT allowed` line for the tunnel the sidecar logged for `port`, matched by trace id. */
  async function gatewayLineFor(port: number, kind = 'connect') {
    const opened = await sidecar.waitForLog(
      (l) => l.msg === 'tunnel opened' && l['dest_authority'] === `127.0.0.1:${port}` && l['kind'] === kind,
    );
    const traceId = opened['trace_id'];
    assert.match(String(traceId), /^[0-9a-f]{32}$/);
    const allowed = await gateway.waitForLog((l) => l.msg === 'CONNECT allowed' && l['trace_id'] === traceId);
    return { opened, allowed };
  }

  test('curl with HTTPS_PROXY reaches an HTTPS destination; TLS runs end to end through the tunnel', async () => {
    const r = await runClient(
      'curl',
      [
        '-sS',
        '--max-time',
        '20',
        '--cacert',
        dest.https.caPath,
        `https://127.0.0.1:${dest.https.port}/via-curl`,
      ],
      { HTTPS_PROXY: proxyUrl, NO_PROXY: '' },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello over tls from sidecar-e2e /via-curl\n');
    const { opened, allowed } = await gatewayLineFor(dest.https.port);
    assert.equal(opened['source_identity'], 'agent-alpha');
    assert.equal(allowed['source_identity'], 'agent-alpha');
    assert.equal(allowed['protocol'], 'HTTP/2', 'the sidecar speaks HTTP/2 to the gateway');
    const closed = await sidecar.waitForLog(
      (l) => l.msg === 'tunnel closed' && l['trace_id'] === opened['trace_id'],
    );
    assert.ok(Number(closed['bytes_client_to_dest']) > 0);
    assert.ok(Number(closed['bytes_dest_to_client']) > 0);
  });

  test('Node fetch through undici ProxyAgent', async () => {
    const dispatcher = new ProxyAgent({
      uri: proxyUrl,
      requestTls: { ca: await readFile(dest.https.caPath, 'utf8') },
    });
    try {
      const res = await fetch(`https://127.0.0.1:${dest.https.port}/via-fetch`, {
        dispatcher,
      } as RequestInit);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'hello over tls from sidecar-e2e /via-fetch\n');
    } finally {
      await dispatcher.close();
    }
  });

  test("Python's urllib with a proxy handler", async (t) => {
    if (!(await hasPython())) {
      t.skip('python3 is not installed: the urllib client test needs it');
      return;
    }
    const script = [
      'import os, ssl, sys, urllib.request',
      'ctx = ssl.create_default_context(cafile=sys.argv[2])',
      '# ProxyHandler() reads https_proxy from the environment, as an agent would.',
      'opener = urllib.request.build_opener(urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=ctx))',
      'sys.stdout.write(opener.open(sys.argv[1], timeout=20).read().decode())',
    ].join('\n');
    const r = await runClient(
      'python3',
      ['-c', script, `https://127.0.0.1:${dest.https.port}/via-urllib`, dest.https.caPath],
      { https_proxy: proxyUrl, no_proxy: '' },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello over tls from sidecar-e2e /via-urllib\n');
  });

  test('HTTP_PROXY: an absolute-form http:// request is carried through a tunnel to its port', async () => {
    const r = await runClient(
      'curl',
      ['-sS', '--max-time', '20', `http://127.0.0.1:${dest.http.port}/plain?x=1`],
      {
        http_proxy: proxyUrl,
        NO_PROXY: '',
      },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from plain-http /plain?x=1\n');
    await gatewayLineFor(dest.http.port, 'http');
  });

  test(`${TUNNELS} concurrent tunnels from one client ride one gateway connection`, async () => {
    const from = gateway.logs.length;
    const tunnels = await Promise.all(
      Array.from({ length: TUNNELS }, () =>
        proxyConnect({ port: sidecar.port }, `127.0.0.1:${dest.echo.port}`),
      ),
    );
    const replies = tunnels.map((t, i) => {
      assert.equal(t.status, 200);
      const reply = readAll(t.socket, t.head);
      t.socket.end(`tunnel ${i} says hello`);
      return reply;
    });
    const texts = (await Promise.all(replies)).map((b) => b.toString());
    assert.deepEqual(
      texts,
      tunnels.map((_, i) => `tunnel ${i} says hello`),
    );
    const allowed = () =>
      gateway.logs
        .slice(from)
        .filter((l) => l.msg === 'CONNECT allowed' && l['dest_authority'] === `127.0.0.1:${dest.echo.port}`);
    await gateway.waitForLog(() => allowed().length >= TUNNELS);
    const peers = new Set(allowed().map((l) => l['source_peer_addr']));
    assert.equal(peers.size, 1, `TLS connections seen by the gateway: ${[...peers].join(', ')}`);
    assert.ok(allowed().every((l) => l['protocol'] === 'HTTP/2'));
  });

  test('half-close and backpressure: 16 MiB each way arrive intact', async () => {
    const t = await proxyConnect({ port: sidecar.port }, `127.0.0.1:${dest.sink.port}`);
    assert.equal(t.status, 200);
    const received = hashAll(t.socket, t.head);
    writePattern(t.socket, LARGE, () => t.socket.end());
    const { bytes, sha256 } = await received;
    const expectedHead = `${LARGE} ${patternHash(LARGE)}\n`;
    assert.equal(bytes, expectedHead.length + LARGE);
    assert.equal(sha256, patternHash(LARGE, expectedHead));
  });

  test('a denied destination: the client sees the gateway 403, with its body', async () => {
    const t = await proxyConnect({ port: sidecar.port }, `127.0.0.1:${dest.ungranted.port}`);
    assert.equal(t.status, 403);
    assert.equal((await readAll(t.socket, t.head)).toString(), 'forbidden\n');
    const curl = await runClient(
      'curl',
      ['-sS', '--max-time', '20', '-w', '%{http_connect}', `https://127.0.0.1:${dest.ungranted.port}/`],
      { HTTPS_PROXY: proxyUrl, NO_PROXY: '' },
    );
    assert.notEqual(curl.code, 0);
    assert.match(curl.stdout, /403$/);
    const denied = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT denied' && l['dest_authority'] === `127.0.0.1:${dest.ungranted.port}`,
    );
    assert.equal(denied['deny_reason'], 'no_matching_permission');
    await sidecar.waitForLog(
      (l) =>
        l.msg === 'tunnel refused' &&
        l['dest_authority'] === `127.0.0.1:${dest.ungranted.port}` &&
        l['status'] === 403,
    );
  });

  test('requests that are neither CONNECT nor absolute http:// get a clear 400', async () => {
    const originForm = await rawProxyRequest(sidecar.port, 'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(originForm, /^HTTP\/1\.1 400 /);
    assert.match(originForm, /sidecar: this is a forward proxy/);
    const httpsUrl = await rawProxyRequest(
      sidecar.port,
      'GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n',
    );
    assert.match(httpsUrl, /^HTTP\/1\.1 400 /);
    assert.match(httpsUrl, /use CONNECT/);
    const badTarget = await rawProxyRequest(sidecar.port, 'CONNECT foo:bar:baz HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match(badTarget, /^HTTP\/1\.1 400 /);
    assert.match(badTarget, /bad CONNECT target/);
    const upgrade = await rawProxyRequest(
      sidecar.port,
      'GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    assert.match(upgrade, /^HTTP\/1\.1 400 /);
    assert.match(upgrade, /upgrades .* are not forwarded/);
  });

  test('the Unix socket listener has mode 0600 and carries tunnels', async () => {
    const info = await stat(socketPath);
    assert.equal(info.mode & 0o777, 0o600);
    const t = await proxyConnect({ socketPath }, `127.0.0.1:${dest.echo.port}`);
    assert.equal(t.status, 200);
    const reply = readAll(t.socket, t.head);
    t.socket.end('over the unix socket');
    assert.equal((await reply).toString(), 'over the unix socket');
  });
});
