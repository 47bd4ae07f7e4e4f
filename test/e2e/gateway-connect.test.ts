import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import {
  type ClientTls,
  h2Connect,
  h2Session,
  hashAll,
  http1Connect,
  http1Request,
  readAll,
} from '../helpers/clients.js';
import { curlViaGateway } from '../helpers/curl.js';
import { freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import {
  closedPort,
  patternHash,
  startEchoServer,
  startHashSink,
  startHttpServer,
  writePattern,
} from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { createPrincipal, grantPermission, grantScope } from '../helpers/registry-rows.js';

const run = promisify(execFile);
const LARGE = 64 * 1024 * 1024;

/**
 * The gateway as a user runs it: the real CLI in a child process, a registry in PostgreSQL, real
 * TLS clients (curl for HTTP/1.1, node:http2 for HTTP/2) and loopback destinations.
 */
describe('gateway end to end', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let gateway: GatewayProcess;
  let alpha: Awaited<ReturnType<TestPki['agent']>>;
  let alphaOtherKey: Awaited<ReturnType<TestPki['agent']>>;
  let noExtension: Awaited<ReturnType<TestPki['agent']>>;
  let malformed: Awaited<ReturnType<TestPki['agent']>>;
  const servers: Array<{ port: number; close(): Promise<void> }> = [];
  let http: { port: number };
  let echo: { port: number };
  let sink: { port: number };
  let ungranted: { port: number };
  let closed: number;
  let tls: ClientTls;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    http = await startHttpServer('http-sink');
    echo = await startEchoServer();
    sink = await startHashSink(LARGE);
    ungranted = await startHttpServer('ungranted');
    servers.push(http as never, echo as never, sink as never, ungranted as never);
    closed = await closedPort();
    alpha = await pki.agent('agent-alpha');
    alphaOtherKey = await pki.agent('agent-alpha');
    noExtension = await pki.agentWithoutExtension();
    // An IA5String (tag 0x16) where a UTF8String must be.
    malformed = await pki.agentWithExtensionDer(Buffer.from([0x16, 0x05, ...Buffer.from('alpha')]));
    tls = { caPath: pki.caCertPath, agent: alpha };

    const principal = await createPrincipal(db.sql, 'org-alice');
    let n = 0;
    for (const port of [http.port, echo.port, sink.port, closed]) {
      const destination = `127.0.0.1:${port}`;
      await grantScope(db.sql, principal.keyId, destination);
      await grantPermission(db.sql, {
        permissionId: `perm-${++n}`,
        principal,
        identity: 'agent-alpha',
        agentSpki: alpha.spkiDer,
        destination,
      });
    }
    const config = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
    });
    gateway = await startGatewayProcess(config);
  });

  after(async () => {
    const code = await gateway?.stop();
    assert.equal(code, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
    for (const s of servers) await s.close();
    await db?.drop();
    await pki?.cleanup();
  });

  const curl = (agent: { certPath: string; keyPath: string }, url: string) =>
    run(
      'curl',
      [...curlViaGateway(gateway.port, pki.caCertPath, agent, 20), '-w', '\n%{http_connect}', url],
      { encoding: 'utf8' },
    ).then(
      (r) => ({ exitCode: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        exitCode: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );

  test('curl: HTTP/1.1 CONNECT to a granted destination reaches it', async () => {
    const r = await curl(alpha, `http://127.0.0.1:${http.port}/via-curl`);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /^hello from http-sink \/via-curl\n/);
    assert.match(r.stdout, /\n200$/);
    const allowed = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT allowed' && l['dest_authority'] === `127.0.0.1:${http.port}`,
    );
    assert.equal(allowed['source_identity'], 'agent-alpha');
    assert.equal(allowed['policy_decision'], 'allow');
    assert.equal(allowed['protocol'], 'HTTP/1.1');
    const closedLine = await gateway.waitForLog(
      (l) => l.msg === 'tunnel closed' && l['dest_authority'] === `127.0.0.1:${http.port}`,
    );
    assert.ok(Number(closedLine['bytes_client_to_dest']) > 0);
    assert.ok(Number(closedLine['bytes_dest_to_client']) > 0);
  });

  test('curl: a destination without a permission gets 403', async () => {
    const r = await curl(alpha, `http://127.0.0.1:${ungranted.port}/`);
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stdout, /403$/);
    const denied = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT denied' && l['dest_authority'] === `127.0.0.1:${ungranted.port}`,
    );
    assert.equal(denied['deny_reason'], 'no_matching_permission');
  });

  test('same identity with another key is denied', async () => {
    const r = await curl(alphaOtherKey, `http://127.0.0.1:${http.port}/`);
    assert.match(r.stdout, /403$/);
  });

  test('missing and malformed identity extensions are denied without an identity', async () => {
    for (const [agent, reason] of [
      [noExtension, 'no_identity'],
      [malformed, 'malformed_identity'],
    ] as const) {
      const before = gateway.logs.length;
      const res = await http1Connect(
        gateway.port,
        { caPath: pki.caCertPath, agent },
        `127.0.0.1:${http.port}`,
      );
      assert.equal(res.status, 403);
      assert.equal((await readAll(res.socket, res.rest)).toString(), 'forbidden\n');
      const denied = await gateway.waitForLog(
        (l) => l.msg === 'CONNECT denied' && l['deny_reason'] === reason && gateway.logs.indexOf(l) >= before,
      );
      assert.equal(denied['source_identity'], undefined);
    }
  });

  test('HTTP/1.1: 405 for other methods, 400 for malformed authorities, 502 for an unreachable one', async () => {
    const get = await http1Request(gateway.port, tls, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(get.status, 405);
    get.socket.destroy();
    for (const bad of ['foo:bar:baz', '127.0.0.1:0', '[::1', 'host:abc']) {
      const res = await http1Connect(gateway.port, tls, bad);
      assert.equal(res.status, 400, `authority ${bad}`);
      assert.equal((await readAll(res.socket, res.rest)).toString(), 'bad request\n');
    }
    const unreachable = await http1Connect(gateway.port, tls, `127.0.0.1:${closed}`);
    assert.equal(unreachable.status, 502);
    assert.equal((await readAll(unreachable.socket, unreachable.rest)).toString(), 'bad gateway\n');
  });

  test('a client without a certificate is refused at the TLS layer', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: gateway.port,
        ca: readFileSync(pki.caCertPath),
        servername: 'localhost',
        ALPNProtocols: ['http/1.1'],
      });
      socket.on('secureConnect', () => socket.write(`CONNECT 127.0.0.1:${http.port} HTTP/1.1\r\n\r\n`));
      let got = '';
      socket.on('data', (d: Buffer) => {
        got += d.toString();
      });
      socket.on('error', () => resolve(`error:${got}`));
      socket.on('close', () => resolve(`closed:${got}`));
    });
    assert.doesNotMatch(outcome, /200/);
    assert.ok(outcome.endsWith(':'), `no bytes must come back, got ${outcome}`);
    const refused = await gateway.waitForLog((l) => l.msg === 'client certificate refused');
    assert.equal(refused['deny_reason'], 'no_client_certificate');
  });

  test('HTTP/1.1 half-close: the client ends, the echo still comes back', async () => {
    const res = await http1Connect(gateway.port, tls, `127.0.0.1:${echo.port}`);
    assert.equal(res.status, 200);
    const reply = readAll(res.socket, res.rest);
    res.socket.end('ping over http/1.1');
    assert.equal((await reply).toString(), 'ping over http/1.1');
  });

  test('HTTP/1.1: 64 MiB each way arrives intact', async () => {
    const res = await http1Connect(gateway.port, tls, `127.0.0.1:${sink.port}`);
    assert.equal(res.status, 200);
    const received = hashAll(res.socket, res.rest);
    writePattern(res.socket, LARGE, () => res.socket.end());
    const { bytes, sha256 } = await received;
    const expectedHead = `${LARGE} ${patternHash(LARGE)}\n`;
    assert.equal(bytes, expectedHead.length + LARGE);
    assert.equal(sha256, patternHash(LARGE, expectedHead));
  });

  test('HTTP/2: concurrent CONNECT streams on one connection, half-close, 403/405/400/502', async () => {
    const session = await h2Session(gateway.port, tls);
    try {
      const streams = await Promise.all(
        Array.from({ length: 8 }, () => h2Connect(session, `127.0.0.1:${echo.port}`)),
      );
      const replies = streams.map(({ status, stream }, i) => {
        assert.equal(status, 200);
        const reply = readAll(stream);
        stream.end(`stream ${i}`);
        return reply;
      });
      const texts = (await Promise.all(replies)).map((b) => b.toString());
      assert.deepEqual(
        texts,
        streams.map((_, i) => `stream ${i}`),
      );

      const denied = await h2Connect(session, `127.0.0.1:${ungranted.port}`);
      assert.equal(denied.status, 403);
      assert.equal((await readAll(denied.stream)).toString(), 'forbidden\n');
      const bad = await h2Connect(session, 'foo:bar:baz');
      assert.equal(bad.status, 400);
      const unreachable = await h2Connect(session, `127.0.0.1:${closed}`);
      assert.equal(unreachable.status, 502);
      const get = await new Promise<number>((resolve, reject) => {
        const s = session.request({ ':method': 'GET', ':path': '/' });
        s.once('response', (h) => resolve(Number(h[':status'])));
        s.once('error', reject);
        s.end();
      });
      assert.equal(get, 405);
    } finally {
      session.close();
    }
    const h2Allowed = gateway.logs.filter((l) => l.msg === 'CONNECT allowed' && l['protocol'] === 'HTTP/2');
    assert.ok(h2Allowed.length >= 8);
    assert.equal(new Set(h2Allowed.map((l) => l['source_peer_addr'])).size, 1, 'one TLS connection');
  });

  test('HTTP/2: 64 MiB each way arrives intact', async () => {
    const session = await h2Session(gateway.port, tls);
    try {
      const { status, stream } = await h2Connect(session, `127.0.0.1:${sink.port}`);
      assert.equal(status, 200);
      const received = hashAll(stream);
      writePattern(stream, LARGE, () => stream.end());
      const { bytes, sha256 } = await received;
      const expectedHead = `${LARGE} ${patternHash(LARGE)}\n`;
      assert.equal(bytes, expectedHead.length + LARGE);
      assert.equal(sha256, patternHash(LARGE, expectedHead));
    } finally {
      session.close();
    }
  });

  test('HTTP/2: a client whose connection vanishes without GOAWAY has its tunnels closed', async () => {
    let raw: TLSSocket | undefined;
    const before = gateway.logs.length;
    const session = h2connect(`https://127.0.0.1:${gateway.port}`, {
      createConnection: () => {
        raw = tlsConnect({
          host: '127.0.0.1',
          port: gateway.port,
          ca: readFileSync(pki.caCertPath),
          cert: readFileSync(alpha.certPath),
          key: readFileSync(alpha.keyPath),
          servername: 'localhost',
          ALPNProtocols: ['h2'],
        });
        return raw;
      },
    });
    session.on('error', () => {});
    const { status, stream } = await h2Connect(session, `127.0.0.1:${echo.port}`);
    assert.equal(status, 200);
    stream.on('error', () => {});
    const allowed = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT allowed' && l['protocol'] === 'HTTP/2' && gateway.logs.indexOf(l) >= before,
    );
    // The TCP connection ends (FIN) with no GOAWAY and no RST_STREAM: the tunnel must not outlive it.
    raw!.end();
    raw!.destroy();
    const closedLine = await gateway.waitForLog(
      (l) => l.msg === 'tunnel closed' && l['source_peer_addr'] === allowed['source_peer_addr'],
    );
    assert.notEqual(closedLine['close_cause'], 'idle_timeout');
  });

  test('HTTP/1.1: a refused client that keeps its side open is still disconnected', async () => {
    // A half-open TCP socket underneath, so receiving the gateway's FIN does not end our side.
    const socket = tlsConnect({
      socket: netConnect({ host: '127.0.0.1', port: gateway.port, allowHalfOpen: true }),
      ca: readFileSync(pki.caCertPath),
      cert: readFileSync(alpha.certPath),
      key: readFileSync(alpha.keyPath),
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
    });
    socket.once('secureConnect', () => socket.write(`CONNECT 127.0.0.1:${ungranted.port} HTTP/1.1\r\n\r\n`));
    const response = await readAll(socket);
    assert.match(response.toString(), /^HTTP\/1\.1 403 /);
    // Our side stays open; the gateway must not wait for it forever. Probe until a write fails.
    let failed: string | undefined;
    socket.on('error', (e: NodeJS.ErrnoException) => {
      failed = e.code ?? e.message;
    });
    for (let i = 0; i < 40 && failed === undefined && !socket.destroyed; i++) {
      await new Promise((r) => setTimeout(r, 250));
      socket.write('x');
    }
    assert.ok(failed !== undefined || socket.destroyed, 'the gateway closed the refused connection');
    socket.destroy();
  });
});
