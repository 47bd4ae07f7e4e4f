import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { constants as http2Constants } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { agentsAllowedTo } from '../helpers/agents.js';
import { type ClientTls, h2Connect, h2Session, http1Connect, readAll } from '../helpers/clients.js';
import { curlViaGateway } from '../helpers/curl.js';
import { freshDatabase } from '../helpers/db.js';
import {
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { patternHash, startEchoServer, startHashSink, writePattern } from '../helpers/loopback-servers.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import { createPrincipal } from '../helpers/registry-rows.js';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

/** The [rate_limit] tables of the running gateway; `reloadRate` is what agent-reload gets. */
function rateLimitToml(reloadRate: number, maxTunnels = 256): string {
  return [
    '[rate_limit]',
    // Everyone else: unlimited, so agent-fast shows that one identity's limit slows nobody else.
    'bytes_per_second = 0',
    `max_tunnels_per_identity = ${maxTunnels}`,
    '[rate_limit.identities."agent-slow"]',
    'bytes_per_second = 65536',
    'burst_bytes = 262144',
    'download_bytes_per_second = 65536',
    'download_burst_bytes = 131072',
    '[rate_limit.identities."agent-capped"]',
    'max_tunnels_per_identity = 2',
    '[rate_limit.identities."agent-reload"]',
    `bytes_per_second = ${reloadRate}`,
    'burst_bytes = 16384',
  ].join('\n');
}

/**
 * Rate limiting through the real gateway process with real clients (node:tls/http2 and curl). No
 * durations are asserted (CI machines are shared and slow): sharing is shown by throttling that only a
 * shared budget can cause, isolation by an unlimited identity never being throttled, and reload by a
 * transfer that could not finish in the test's lifetime at the old rate.
 */
describe('rate limiting end to end', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let gateway: GatewayProcess;
  let configPath: string;
  let agents: Map<string, TestAgent>;
  const servers: Array<{ close(): Promise<void> }> = [];
  let sink: { port: number };
  let echo: { port: number };
  let files: { port: number };

  const tlsOf = (identity: string): ClientTls => ({ caPath: pki.caCertPath, agent: agents.get(identity)! });
  const writeConfig = (reloadRate: number, extraServer = '', maxTunnels = 256) =>
    writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraServer,
      extraEgress: rateLimitToml(reloadRate, maxTunnels),
    });
  const linesAfter = (mark: number, predicate: (l: LogLine) => boolean) =>
    gateway.logs.slice(mark).filter(predicate);

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    sink = await startHashSink(0);
    echo = await startEchoServer();
    files = await startFileServer(256 * KiB);
    servers.push(sink as never, echo as never, files as never);
    const principal = await createPrincipal(db.sql, 'org-rl');
    const destinations = [sink.port, echo.port, files.port].map((p) => `127.0.0.1:${p}`);
    const identities = ['agent-slow', 'agent-fast', 'agent-capped', 'agent-reload'];
    agents = await agentsAllowedTo(db.sql, pki, principal, identities, destinations);
    configPath = await writeConfig(4096);
    gateway = await startGatewayProcess(configPath);
  });

  after(async () => {
    // DEBUG_RL=1 prints the gateway's log lines, to diagnose a failure.
    if (process.env['DEBUG_RL']) for (const l of gateway.logs) console.error(JSON.stringify(l));
    const code = await gateway?.stop();
    assert.equal(code, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
    for (const s of servers) await s.close();
    await db?.drop();
    await pki?.cleanup();
  });

  test('one identity: HTTP/1.1 and HTTP/2 tunnels share one budget, half-close intact', {
    timeout: 60_000,
  }, async () => {
    const mark = gateway.logs.length;
    // Four uploads of 96 KiB: each alone fits the 256 KiB burst, together they do not, so throttling
    // happens only if all four draw on one bucket.
    const size = 96 * KiB;
    const session = await h2Session(gateway.port, tlsOf('agent-slow'));
    try {
      const clients: Duplex[] = [];
      for (let i = 0; i < 2; i++) {
        const res = await http1Connect(gateway.port, tlsOf('agent-slow'), `127.0.0.1:${sink.port}`);
        assert.equal(res.status, 200);
        clients.push(res.socket);
        if (res.rest.length > 0) res.socket.unshift(res.rest);
      }
      for (let i = 0; i < 2; i++) {
        const { status, stream } = await h2Connect(session, `127.0.0.1:${sink.port}`);
        assert.equal(status, 200);
        clients.push(stream);
      }
      await uploadAndCheck(clients, size);
    } finally {
      session.close();
    }
    const closed = await waitForCount(gateway, mark, 4, (l) => isClosed(l, 'agent-slow', sink.port));
    for (const line of closed) assert.equal(line['close_cause'], 'completed');
    const throttledMs = closed.reduce((sum, l) => sum + Number(l['throttled_ms']), 0);
    assert.ok(throttledMs > 0, 'the four tunnels together must have been throttled');
    const limited = linesAfter(
      mark,
      (l) => l.msg === 'rate limited' && l['source_identity'] === 'agent-slow',
    );
    assert.ok(
      limited.length >= 1 && limited.length <= 4,
      `"rate limited" once per tunnel at most: ${limited.length}`,
    );
    for (const line of limited) {
      assert.equal(line['direction'], 'client_to_dest');
      assert.equal(line['limit'], 'identity_upload');
      assert.equal(line['bytes_per_second'], 65_536);
    }
    assert.deepEqual(new Set(closed.map((l) => l['protocol'])), new Set(['HTTP/1.1', 'HTTP/2']));
  });

  test('curl: downloads are limited by the download bucket', { timeout: 60_000 }, async () => {
    const mark = gateway.logs.length;
    const agent = agents.get('agent-slow')!;
    // 256 KiB against a 128 KiB download burst: curl's transfer must be held at least once.
    const { stdout } = await run(
      'curl',
      [
        ...curlViaGateway(gateway.port, pki.caCertPath, agent, 50),
        '-o',
        '/dev/null',
        '-w',
        '%{http_code} %{size_download}',
        `http://127.0.0.1:${files.port}/`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(stdout, `200 ${256 * KiB}`);
    const [closed] = await waitForCount(gateway, mark, 1, (l) => isClosed(l, 'agent-slow', files.port));
    assert.ok(Number(closed!['throttled_ms_dest_to_client']) > 0, JSON.stringify(closed));
    // Once per tunnel: it names the first direction held, which may be the request waiting behind
    // the upload bucket's debt from the previous test.
    const limited = linesAfter(
      mark,
      (l) => l.msg === 'rate limited' && l['source_identity'] === 'agent-slow',
    );
    assert.equal(limited.length, 1);
  });

  test('another identity is not slowed while one is throttled', { timeout: 60_000 }, async () => {
    const mark = gateway.logs.length;
    // agent-slow starts an upload far beyond its burst (it will be held for seconds) ...
    const slowSession = await h2Session(gateway.port, tlsOf('agent-slow'));
    const slow = await h2Connect(slowSession, `127.0.0.1:${sink.port}`);
    assert.equal(slow.status, 200);
    slow.stream.on('error', () => {});
    writePattern(slow.stream, 4 * MiB, () => {});
    await gateway.waitForLog(
      (l) =>
        gateway.logs.indexOf(l) >= mark && l.msg === 'rate limited' && l['source_identity'] === 'agent-slow',
    );
    // ... while agent-fast moves 32 MiB over HTTP/2 and 32 MiB over HTTP/1.1 without ever being held.
    const size = 32 * MiB;
    const session = await h2Session(gateway.port, tlsOf('agent-fast'));
    try {
      const h2 = await h2Connect(session, `127.0.0.1:${sink.port}`);
      const h1 = await http1Connect(gateway.port, tlsOf('agent-fast'), `127.0.0.1:${sink.port}`);
      if (h1.rest.length > 0) h1.socket.unshift(h1.rest);
      await uploadAndCheck([h2.stream, h1.socket], size);
    } finally {
      session.close();
    }
    // The slow identity is still held far below its 4 MiB while the fast one is done.
    // Reset the stream: its unsent bytes are dropped, nothing is left to drain at 64 KiB/s.
    slow.stream.close(http2Constants.NGHTTP2_CANCEL);
    slowSession.close();
    const fastClosed = await waitForCount(gateway, mark, 2, (l) => isClosed(l, 'agent-fast', sink.port));
    for (const line of fastClosed) assert.equal(line['throttled_ms'], 0);
    assert.deepEqual(
      linesAfter(mark, (l) => l.msg === 'rate limited' && l['source_identity'] === 'agent-fast'),
      [],
    );
    const [slowClosed] = await waitForCount(gateway, mark, 1, (l) => isClosed(l, 'agent-slow', sink.port));
    assert.ok(Number(slowClosed!['bytes_client_to_dest']) < 4 * MiB);
  });

  test('max_tunnels_per_identity: 429 beyond the cap on both protocols, a slot frees on close', {
    timeout: 60_000,
  }, async () => {
    const mark = gateway.logs.length;
    const tls = tlsOf('agent-capped');
    const session = await h2Session(gateway.port, tls);
    const sockets: Duplex[] = [];
    try {
      const first = await h2Connect(session, `127.0.0.1:${echo.port}`);
      const second = await http1Connect(gateway.port, tls, `127.0.0.1:${echo.port}`);
      sockets.push(second.socket);
      assert.equal(first.status, 200);
      assert.equal(second.status, 200);
      const refusedH2 = await h2Connect(session, `127.0.0.1:${echo.port}`);
      assert.equal(refusedH2.status, 429);
      assert.equal((await readAll(refusedH2.stream)).toString(), 'too many requests\n');
      const refusedH1 = await http1Connect(gateway.port, tls, `127.0.0.1:${echo.port}`);
      sockets.push(refusedH1.socket);
      assert.equal(refusedH1.status, 429);
      assert.equal((await readAll(refusedH1.socket, refusedH1.rest)).toString(), 'too many requests\n');
      // Log lines come through a pipe and may trail the responses.
      const logged = await waitForCount(gateway, mark, 2, (l) => l.msg === 'too many tunnels');
      assert.equal(logged.length, 2);
      assert.equal(logged[0]!['source_identity'], 'agent-capped');
      assert.equal(logged[0]!['max_tunnels_per_identity'], 2);
      assert.equal(logged[0]!['dest_authority'], `127.0.0.1:${echo.port}`);
      // The cap is checked before policy: no decision was logged for the refused CONNECTs.
      assert.equal(linesAfter(mark, (l) => l.msg === 'CONNECT allowed').length, 2);

      // Closing one tunnel frees its slot.
      const echoed = readAll(first.stream);
      first.stream.end('bye');
      assert.equal((await echoed).toString(), 'bye');
      await waitForCount(gateway, mark, 1, (l) => isClosed(l, 'agent-capped', echo.port));
      const third = await h2Connect(session, `127.0.0.1:${echo.port}`);
      assert.equal(third.status, 200);
      third.stream.end();
      await readAll(third.stream);
      second.socket.end();
      await readAll(second.socket, second.rest);
      // All three closed, so the next test starts with no tunnel of agent-capped open.
      await waitForCount(gateway, mark, 3, (l) => isClosed(l, 'agent-capped', echo.port));
    } finally {
      session.close();
      for (const s of sockets) s.destroy();
    }
  });

  test('SIGHUP applies a new rate to a running tunnel without dropping it', { timeout: 90_000 }, async () => {
    const mark = gateway.logs.length;
    // 2 MiB at agent-reload's 4 KiB/s would take over eight minutes: it finishes only if the reload
    // reaches the running tunnel.
    const size = 2 * MiB;
    const session = await h2Session(gateway.port, tlsOf('agent-reload'));
    try {
      const { status, stream } = await h2Connect(session, `127.0.0.1:${sink.port}`);
      assert.equal(status, 200);
      const reply = readAll(stream);
      writePattern(stream, size, () => stream.end());
      await gateway.waitForLog(
        (l) =>
          gateway.logs.indexOf(l) >= mark &&
          l.msg === 'rate limited' &&
          l['source_identity'] === 'agent-reload',
      );
      // Rate 0 for agent-reload (unlimited); also a server key that only a restart applies.
      await copyFile(await writeConfig(0, 'handshake_timeout_ms = 7000', 300), configPath);
      gateway.child.kill('SIGHUP');
      const reloaded = await gateway.waitForLog(
        (l) => gateway.logs.indexOf(l) >= mark && l.msg.startsWith('config reload'),
      );
      assert.equal(reloaded.msg, 'config reloaded', JSON.stringify(reloaded));
      assert.deepEqual(reloaded['ignored_until_restart'], ['server.handshake_timeout_ms']);
      // What was applied is named, the tunnel cap included (issue 10: it used to be left out).
      assert.deepEqual(reloaded['applied'], ['rate_limit.identities', 'rate_limit.max_tunnels_per_identity']);
      assert.equal(reloaded['max_tunnels_per_identity'], 300);
      assert.equal((await reply).toString(), `${size} ${patternHash(size)}\n`);
    } finally {
      session.close();
    }
    const [closed] = await waitForCount(gateway, mark, 1, (l) => isClosed(l, 'agent-reload', sink.port));
    assert.equal(closed!['close_cause'], 'completed');
    assert.equal(closed!['bytes_client_to_dest'], size);
  });

  test('SIGHUP with a bad file keeps the running config', { timeout: 60_000 }, async () => {
    const mark = gateway.logs.length;
    const bad = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraEgress: '[rate_limit]\nbytes_per_second = 1000\nburst_bytes = 0',
    });
    await copyFile(bad, configPath);
    gateway.child.kill('SIGHUP');
    const failed = await gateway.waitForLog(
      (l) => gateway.logs.indexOf(l) >= mark && l.msg === 'config reload failed',
    );
    assert.match(String((failed['problems'] as string[])[0]), /^rate_limit\.burst_bytes: must be > 0/);
    // Still running, and still with the old limits: agent-capped is still capped at 2.
    const tls = tlsOf('agent-capped');
    const open = [
      await http1Connect(gateway.port, tls, `127.0.0.1:${echo.port}`),
      await http1Connect(gateway.port, tls, `127.0.0.1:${echo.port}`),
    ];
    assert.deepEqual(
      open.map((r) => r.status),
      [200, 200],
    );
    const refused = await http1Connect(gateway.port, tls, `127.0.0.1:${echo.port}`);
    assert.equal(refused.status, 429);
    refused.socket.destroy();
    for (const r of open) {
      r.socket.end();
      await readAll(r.socket, r.rest);
    }
  });
});

/**
 * Sends `size` pattern bytes on every tunnel and ends it; the hash sink answers only after that end
 * reached it (half-close), with the count and hash of what it got, which must match.
 */
async function uploadAndCheck(clients: readonly Duplex[], size: number): Promise<void> {
  const replies = clients.map((c) => {
    const reply = readAll(c);
    writePattern(c, size, () => c.end());
    return reply;
  });
  for (const reply of await Promise.all(replies)) {
    assert.equal(reply.toString(), `${size} ${patternHash(size)}\n`);
  }
}

function isClosed(line: LogLine, identity: string, port: number): boolean {
  return (
    line.msg === 'tunnel closed' &&
    line['source_identity'] === identity &&
    line['dest_authority'] === `127.0.0.1:${port}`
  );
}

/** Waits until `count` lines after `mark` match, and returns them. */
async function waitForCount(
  gateway: GatewayProcess,
  mark: number,
  count: number,
  predicate: (l: LogLine) => boolean,
): Promise<LogLine[]> {
  const matching = () => gateway.logs.slice(mark).filter(predicate);
  // A line is pushed to `logs` before waiters see it, so the count includes the line being tested.
  await gateway.waitForLog((l) => predicate(l) && matching().length >= count, `${count} matching lines`);
  return matching();
}

/** An HTTP server on loopback answering every GET with `bytes` bytes (for curl downloads). */
async function startFileServer(bytes: number): Promise<{ port: number; close(): Promise<void> }> {
  const body = Buffer.alloc(bytes, 0x61);
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
