import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type CountingSink, startCountingSink } from '../../src/exfil/sink.js';
import { leaseSize } from '../../src/ratelimit/lease-size.js';
import { agentsAllowedTo } from '../helpers/agents.js';
import { agentEndpoint, drive } from '../helpers/budget-traffic.js';
import { http1Connect } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import {
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import { createPrincipal } from '../helpers/registry-rows.js';

const KiB = 1024;
const RATE = 256 * KiB;
const BURST = 64 * KiB;

/**
 * `server.workers = 2`: two processes serve one port, share one identity's budget through the registry,
 * reload on the primary's SIGHUP, a killed worker is replaced, and SIGTERM drains every worker before the
 * primary exits 0.
 */
describe('server.workers', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let gateway: GatewayProcess;
  let sink: CountingSink;
  let agent: TestAgent;
  let authority: string;

  const count = (predicate: (l: LogLine) => boolean) => gateway.logs.filter(predicate).length;
  const waitForCount = (predicate: (l: LogLine) => boolean, n: number, what: string) =>
    gateway.waitForLog(() => count(predicate) >= n, what);

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    sink = await startCountingSink('127.0.0.1', 0);
    authority = `127.0.0.1:${sink.port}`;
    const principal = await createPrincipal(db.sql, 'org-workers');
    agent = (await agentsAllowedTo(db.sql, pki, principal, ['agent-w'], [authority])).get('agent-w')!;
    gateway = await startGatewayProcess(
      await writeGatewayConfig({
        dir: pki.dir,
        databaseUrl: db.url,
        certPath: pki.serverCertPath,
        keyPath: pki.serverKeyPath,
        extraServer: 'workers = 2',
        extraEgress: [
          '[rate_limit]',
          'shared = true',
          `bytes_per_second = ${RATE}`,
          `burst_bytes = ${BURST}`,
        ].join('\n'),
      }),
    );
    await waitForCount((l) => l.msg === 'listening', 2, 'both workers listening');
  });

  after(async () => {
    await gateway?.stop('SIGKILL');
    await sink?.close();
    await db?.drop();
    await pki?.cleanup();
  });

  test('two workers, one port, one shared budget', { timeout: 60_000 }, async () => {
    const ports = new Set(gateway.logs.filter((l) => l.msg === 'listening').map((l) => l['listen_addr']));
    assert.equal(ports.size, 1, 'every worker serves the same address');
    const mark = gateway.logs.length;
    await sink.reset();
    await drive(agentEndpoint(gateway.port, pki.caCertPath, agent), authority, 'h1-16', 3000);
    const counter = await sink.snapshot();
    const byWorker = new Set(
      gateway.logs
        .slice(mark)
        .filter((l) => l.msg === 'CONNECT allowed')
        .map((l) => l['worker_id']),
    );
    assert.deepEqual([...byWorker].sort(), [1, 2], 'connections are spread over both workers');
    const lease = leaseSize({ bytesPerSecond: RATE, burstBytes: BURST });
    for (const w of [1, 2, 3]) {
      const allowed = RATE * w + BURST + 2 * lease + RATE * 0.1;
      assert.ok(
        counter.maxIn(w * 1000) <= allowed,
        `${counter.maxIn(w * 1000)} bytes in ${w} s, allowed ${allowed}`,
      );
    }
  });

  test('SIGHUP reaches every worker', { timeout: 30_000 }, async () => {
    const reloaded = (l: LogLine) => l.msg === 'config reloaded';
    const before = count(reloaded);
    gateway.child.kill('SIGHUP');
    await waitForCount(reloaded, before + 2, 'both workers reloaded');
    const ids = gateway.logs
      .filter(reloaded)
      .slice(before)
      .map((l) => l['worker_id']);
    assert.deepEqual(ids.sort(), [1, 2]);
  });

  test('a worker that dies is replaced; the port stays served', { timeout: 30_000 }, async () => {
    const started = gateway.logs.filter((l) => l.msg === 'worker started');
    const victim = Number(started[0]!['worker_pid']);
    process.kill(victim, 'SIGKILL');
    await gateway.waitForLog(
      (l) => l.msg === 'worker exited' && l['worker_pid'] === victim && l['signal'] === 'SIGKILL',
      'worker exited',
    );
    await waitForCount((l) => l.msg === 'worker started', 3, 'a replacement worker');
    await waitForCount((l) => l.msg === 'listening', 3, 'the replacement listening');
    const res = await http1Connect(gateway.port, { caPath: pki.caCertPath, agent }, authority);
    res.socket.destroy();
    assert.equal(res.status, 200);
  });

  test('SIGTERM: every worker drains, then the primary exits 0', { timeout: 60_000 }, async () => {
    const code = await gateway.stop('SIGTERM');
    assert.equal(code, 0, gateway.stderr());
    assert.equal(
      count((l) => l.msg === 'shutdown complete'),
      2,
      'both live workers drained',
    );
    assert.equal(
      count((l) => l.msg === 'worker exited' && l['code'] === 0),
      2,
    );
  });
});
