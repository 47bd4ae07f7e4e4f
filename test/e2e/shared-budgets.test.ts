import assert from 'node:assert/strict';
import { type ClientHttp2Session, constants as http2Constants } from 'node:http2';
import { after, before, describe, test } from 'node:test';
import { http1Tunnel, http2Session, type OpenedTunnel } from '../../src/exfil/clients.js';
import { type CountingSink, startCountingSink } from '../../src/exfil/sink.js';
import { leaseSize } from '../../src/ratelimit/lease-size.js';
import { agentsAllowedTo } from '../helpers/agents.js';
import { agentEndpoint, drive } from '../helpers/budget-traffic.js';
import { runCli } from '../helpers/cli-runner.js';
import { http1Connect } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import { createPrincipal } from '../helpers/registry-rows.js';

const KiB = 1024;

/**
 * `[rate_limit] shared = true` with real gateway processes on one registry: one identity's rate holds
 * across two gateways, a SIGKILL and restart grant no new burst and keep the quota (which ends in 429 with
 * Retry-After on both protocols), and the tunnel cap counts every gateway, with a crashed gateway's
 * tunnels counting only until its heartbeat expires. Bytes are counted by the test's own sink (in its own
 * thread) per sliding window; no duration is asserted.
 */
describe('shared budgets across gateway processes', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let configPath: string;
  let agents: Map<string, TestAgent>;
  let sink: CountingSink;
  let authority: string;
  const gateways: GatewayProcess[] = [];

  const RATE = 256 * KiB;
  const BURST = 64 * KiB;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    sink = await startCountingSink('127.0.0.1', 0);
    authority = `127.0.0.1:${sink.port}`;
    const principal = await createPrincipal(db.sql, 'org-shared');
    agents = await agentsAllowedTo(
      db.sql,
      pki,
      principal,
      ['agent-rate', 'agent-burst', 'agent-quota', 'agent-capped'],
      [authority],
    );
    configPath = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraEgress: [
        '[rate_limit]',
        'shared = true',
        'bytes_per_second = 0',
        '[rate_limit.identities."agent-rate"]',
        `bytes_per_second = ${RATE}`,
        `burst_bytes = ${BURST}`,
        // A big burst at a low rate: a restarted gateway that granted a fresh burst would show at once.
        '[rate_limit.identities."agent-burst"]',
        'bytes_per_second = 16384',
        'burst_bytes = 1048576',
        '[rate_limit.identities."agent-quota"]',
        'upload_quota_bytes = 524288',
        '[rate_limit.identities."agent-capped"]',
        'max_tunnels_per_identity = 3',
      ].join('\n'),
    });
    gateways.push(await startGatewayProcess(configPath), await startGatewayProcess(configPath));
  });

  after(async () => {
    for (const g of gateways) await g.stop('SIGKILL');
    await sink?.close();
    await db?.drop();
    await pki?.cleanup();
  });

  const endpointOf = (gateway: GatewayProcess, identity: string) =>
    agentEndpoint(gateway.port, pki.caCertPath, agents.get(identity)!);

  test('two gateways, one identity, both protocols: one rate, within rate x W + burst + 2 x lease', {
    timeout: 60_000,
  }, async () => {
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    const marks = [a.logs.length, b.logs.length];
    await sink.reset();
    await Promise.all([
      drive(endpointOf(a, 'agent-rate'), authority, 'h1-16', 4000),
      drive(endpointOf(b, 'agent-rate'), authority, 'h2-16', 4000),
    ]);
    const counter = await sink.snapshot();
    const lease = leaseSize({ bytesPerSecond: RATE, burstBytes: BURST });
    // 100 ms of the rate for the sink's reads on a shared machine, as exfil-test allows by default (50).
    const slack = RATE * 0.1;
    for (const w of [1, 2, 3]) {
      const most = counter.maxIn(w * 1000);
      const allowed = RATE * w + BURST + 2 * lease + slack;
      assert.ok(most <= allowed, `${most} bytes in ${w} s through two gateways, allowed ${allowed}`);
    }
    // Each gateway alone would allow the whole rate: both were held, and both moved bytes.
    for (const [i, g] of [a, b].entries()) {
      const held = g.logs
        .slice(marks[i])
        .filter((l) => l.msg === 'rate limited' && l['source_identity'] === 'agent-rate');
      assert.ok(held.length > 0, `gateway ${i} never held agent-rate`);
    }
    assert.ok(counter.total >= RATE * 2, `only ${counter.total} bytes arrived in 4 s`);
  });

  test('SIGKILL and restart mid-transfer: no new burst, and the quota survives and ends in 429', {
    timeout: 90_000,
  }, async () => {
    const killed = gateways.shift()!;
    // agent-burst spends its 1 MiB burst; agent-quota spends its 512 KiB quota: both through this gateway.
    await sink.reset();
    await Promise.all([
      drive(endpointOf(killed, 'agent-burst'), authority, 'h1-1', 2000),
      drive(endpointOf(killed, 'agent-quota'), authority, 'h2-1', 2000),
    ]);
    const before = (await sink.snapshot()).total;
    assert.ok(before >= 1024 * KiB, `the first gateway moved only ${before} bytes`);
    await killed.stop('SIGKILL');
    const restarted = await startGatewayProcess(configPath);
    gateways.push(restarted);

    await sink.reset();
    await drive(endpointOf(restarted, 'agent-burst'), authority, 'h1-1', 3000);
    const after = (await sink.snapshot()).total;
    // A fresh burst would be 1 MiB at once; the shared bucket only refilled at 16 KiB/s since.
    assert.ok(after < 512 * KiB, `a restarted gateway let ${after} bytes through: a new burst`);
    assert.ok(after > 0, 'the restarted gateway moves bytes at the rate');

    const h1 = await http1Connect(
      restarted.port,
      { caPath: pki.caCertPath, agent: agents.get('agent-quota')! },
      authority,
    );
    h1.socket.destroy();
    assert.equal(h1.status, 429);
    const retry = Number(/^retry-after: (\d+)$/im.exec(h1.head)?.[1]);
    // The quota's first slot leaves its one-day window a day after it began: about a day from now.
    assert.ok(retry > 80_000 && retry <= 86_460, `Retry-After ${retry}`);

    const session = await http2Session(endpointOf(restarted, 'agent-quota'));
    try {
      const headers = await h2Refusal(session, authority);
      assert.equal(headers[':status'], 429);
      assert.ok(Number(headers['retry-after']) > 80_000, `retry-after ${headers['retry-after']}`);
    } finally {
      session.destroy();
    }
    // The client may see its 429 before the log line reaches us: wait for the second one.
    const overQuota = (l: { msg: string }) => l.msg === 'over quota';
    await restarted.waitForLog(() => restarted.logs.filter(overQuota).length >= 2, 'two "over quota" lines');
    const logged = restarted.logs.filter(overQuota);
    assert.ok(logged.every((l) => l['direction'] === 'upload' && l['source_identity'] === 'agent-quota'));
    // Announced once in the window, by whichever gateway found it spent first.
    const announced = [...gateways, killed].flatMap((g) =>
      g.logs.filter((l) => l.msg === 'quota exhausted' && l['source_identity'] === 'agent-quota'),
    );
    assert.equal(announced.length, 1, JSON.stringify(announced));
    assert.equal(announced[0]!['quota_bytes'], 524_288);
  });

  test("the admin listener's /v1/limits carries the quota and what the shared window holds (the dashboard's view)", {
    timeout: 60_000,
  }, async () => {
    const token = 'q'.repeat(32);
    const withAdmin = await startGatewayProcess(
      await writeGatewayConfig({
        dir: pki.dir,
        databaseUrl: db.url,
        certPath: pki.serverCertPath,
        keyPath: pki.serverKeyPath,
        extraEgress:
          '[rate_limit]\nshared = true\n[rate_limit.identities."agent-quota"]\nupload_quota_bytes = 524288',
        extraTables: '[admin]\nlisten_addr = "127.0.0.1:0"',
      }),
      { AGENT_GATEWAY_ADMIN_TOKEN: token },
    );
    try {
      const line = await withAdmin.waitForLog((l) => l.msg === 'admin listening', 'admin listening');
      const res = await fetch(
        `http://${String(line['admin_addr'])}/v1/limits?identity=agent-quota&identity=agent-rate`,
        {
          headers: { authorization: `Bearer ${token}` },
        },
      );
      assert.equal(res.status, 200);
      const body = (await res.json()) as {
        identities: Record<string, { quota: Record<string, number> | null }>;
      };
      const quota = body.identities['agent-quota']?.quota;
      assert.equal(quota?.['upload_quota_bytes'], 524_288);
      assert.equal(quota?.['window_s'], 86_400);
      // The earlier test spent it through other gateways: the shared store says so, not this process.
      assert.ok((quota?.['upload_used_bytes'] ?? 0) >= 512 * KiB * 0.9, JSON.stringify(quota));
      assert.equal(body.identities['agent-rate']?.quota, null, 'no quota, no quota view');
    } finally {
      await withAdmin.stop();
    }
  });

  test('budget show: rate, the bucket now, quota used and remaining, per identity', async () => {
    const json = await runCli(
      ['budget', 'show', '--config', configPath, '--identity', 'agent-quota', '--json'],
      {
        env: { AGENT_GATEWAY_DATABASE_URL: db.url },
      },
    );
    assert.equal(json.code, 0, json.stderr);
    const rows = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    const upload = rows.find((r) => r['direction'] === 'upload')!;
    assert.equal(upload['identity'], 'agent-quota');
    assert.equal(upload['quota_bytes'], 524_288);
    assert.equal(upload['quota_remaining_bytes'], 0);
    assert.ok(Number(upload['quota_used_bytes']) >= 524_288);
    assert.ok(Number(upload['quota_free_again_s']) > 80_000);
    const table = await runCli(['budget', 'show', '--config', configPath, '--database-url', db.url]);
    assert.equal(table.code, 0, table.stderr);
    for (const identity of ['agent-rate', 'agent-burst', 'agent-quota', 'agent-capped']) {
      assert.match(table.stdout, new RegExp(`^${identity}\\s+upload\\s`, 'm'), identity);
    }
    assert.match(table.stdout, /^agent-rate\s+upload\s+262144\s+65536\s/m);
    const bad = await runCli([
      'budget',
      'show',
      '--config',
      `${configPath}.missing`,
      '--database-url',
      db.url,
    ]);
    assert.equal(bad.code, 2);
  });

  test('the tunnel cap counts every gateway; a killed gateway counts only until its heartbeat expires', {
    timeout: 90_000,
  }, async () => {
    const [a, b] = gateways as [GatewayProcess, GatewayProcess];
    const open: OpenedTunnel[] = [];
    try {
      for (const g of [a, a, b]) open.push(await http1Tunnel(endpointOf(g, 'agent-capped'), authority));
      for (const g of [a, b]) {
        const refused = await http1Connect(
          g.port,
          { caPath: pki.caCertPath, agent: agents.get('agent-capped')! },
          authority,
        );
        refused.socket.destroy();
        assert.equal(refused.status, 429, 'a fourth tunnel, on either gateway');
      }
      // One closes on a: b may open one.
      open.shift()!.reset();
      const admitted = await retryUntil200(() => http1Tunnel(endpointOf(b, 'agent-capped'), authority));
      open.push(admitted);

      // a dies holding one tunnel; b is at the cap until a's count expires (15 s without a heartbeat).
      await a.stop('SIGKILL');
      gateways.splice(gateways.indexOf(a), 1);
      const refused = await http1Connect(
        b.port,
        { caPath: pki.caCertPath, agent: agents.get('agent-capped')! },
        authority,
      );
      refused.socket.destroy();
      assert.equal(refused.status, 429);
      open.push(await retryUntil200(() => http1Tunnel(endpointOf(b, 'agent-capped'), authority), 40_000));
    } finally {
      for (const t of open) t.reset();
    }
  });
});

/** A CONNECT stream's response headers (the refusal's), on an HTTP/2 connection. */
function h2Refusal(session: ClientHttp2Session, authority: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'CONNECT', ':authority': authority });
    stream.once('response', (headers) => {
      stream.close(http2Constants.NGHTTP2_CANCEL);
      resolve(headers as Record<string, unknown>);
    });
    stream.once('error', reject);
  });
}

/** Tries `open` until it is answered 200 (a refused CONNECT is asked again a little later), within `ms`. */
async function retryUntil200(open: () => Promise<OpenedTunnel>, ms = 10_000): Promise<OpenedTunnel> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await open();
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
