import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type ClientTls,
  echoOrClose,
  h2Connect,
  h2Session,
  http1Connect,
  readAll,
} from '../helpers/clients.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { type PrometheusSample, type PrometheusServer, startPrometheus } from '../helpers/prometheus.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

/**
 * Issue 14, metrics: the real Prometheus server (Debian's) scrapes the gateway's /metrics every second
 * with the read-only token from a credentials file, and the query results after known traffic are what
 * happened: allows by protocol, denies by reason, bytes by direction, close causes, and per-identity
 * series bounded to the configured number of identities.
 */
const ADMIN = 'a'.repeat(32);
const READER = 'p'.repeat(32);
const BYTES = 1000;
let pki: TestPki;
let db: FreshDatabase;
let dir: string;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let gateway: GatewayProcess;
let prometheus: PrometheusServer;
let destination: string;
const tlsOf: Record<string, ClientTls> = {};

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  dir = await mkdtemp(join(tmpdir(), 'ag-prom-'));
  echo = await startEchoServer();
  destination = `127.0.0.1:${echo.port}`;
  for (const identity of ['agent-prom-a', 'agent-prom-b']) {
    const agent = await pki.agent(identity);
    await grantLoopbackPorts(db.sql, { identity, agentSpki: agent.spkiDer, ports: [echo.port] });
    tlsOf[identity] = { caPath: pki.caCertPath, agent };
  }
  tlsOf['ungranted'] = { caPath: pki.caCertPath, agent: await pki.agent('agent-prom-ungranted') };
  // Its identity sits under another OID: the gateway reads none (no_identity).
  tlsOf['anonymous'] = {
    caPath: pki.caCertPath,
    agent: await pki.agent('x', { oid: '1.3.6.1.4.1.99999.1' }),
  };
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraObservability: 'per_identity_metrics = true\nper_identity_metrics_max = 1',
      extraTables: '[admin]\nlisten_addr = "127.0.0.1:0"\nreadonly_token_env = "TEST_READ_TOKEN"',
    }),
    { AGENT_GATEWAY_ADMIN_TOKEN: ADMIN, TEST_READ_TOKEN: READER },
  );
  const line = await gateway.waitForLog((l) => l.msg === 'admin listening', 'admin listening');
  const tokenFile = join(dir, 'token');
  await writeFile(tokenFile, READER, { mode: 0o600 });
  prometheus = await startPrometheus({ dir, target: String(line['admin_addr']), tokenFile });
});

after(async () => {
  await prometheus?.stop();
  await gateway?.stop();
  await echo?.close();
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
  await pki?.cleanup();
});

async function http1Echo(who: string): Promise<number> {
  return echoOrClose(await http1Connect(gateway.port, tlsOf[who]!, destination), Buffer.alloc(BYTES, 7));
}

const total = (samples: PrometheusSample[]) => samples.reduce((n, s) => n + s.value, 0);

describe('Prometheus scrapes the gateway', { timeout: 120_000 }, () => {
  test('known traffic shows up in query results: allows, denies by reason, bytes, causes', async () => {
    assert.deepEqual(
      (await prometheus.waitFor('up{job="agent_gateway"}', (s) => s.length === 1 && s[0]!.value === 1))
        .length,
      1,
      'the target is up: the read-only token from the credentials file is accepted',
    );
    for (let i = 0; i < 3; i++) assert.equal(await http1Echo('agent-prom-a'), 200);
    assert.equal(await http1Echo('agent-prom-b'), 200);
    const session = await h2Session(gateway.port, tlsOf['agent-prom-a']!);
    const { status, stream } = await h2Connect(session, destination);
    assert.equal(status, 200);
    const reply = readAll(stream);
    stream.end(Buffer.alloc(BYTES, 1));
    assert.equal((await reply).length, BYTES);
    session.close();
    for (let i = 0; i < 2; i++) assert.equal(await http1Echo('ungranted'), 403);
    assert.equal(await http1Echo('anonymous'), 403);

    const allowed = await prometheus.waitFor(
      'sum by (protocol) (agent_gateway_connects_total{result="allowed"})',
      (s) => total(s) === 5,
    );
    assert.deepEqual(Object.fromEntries(allowed.map((s) => [s.metric['protocol'], s.value])), {
      'HTTP/1.1': 4,
      'HTTP/2': 1,
    });
    const denied = await prometheus.waitFor(
      'sum by (deny_reason) (agent_gateway_connects_total{result="denied"})',
      (s) => total(s) === 3,
    );
    const byReason = Object.fromEntries(denied.map((s) => [s.metric['deny_reason'], s.value]));
    assert.equal(byReason['no_matching_permission'], 2);
    assert.equal(byReason['no_identity'], 1);
    assert.equal(byReason['bad_signature'], 0, 'reasons that never happened exist at 0');

    const bytes = await prometheus.waitFor(
      'agent_gateway_tunnel_bytes_total',
      (s) => total(s) === 2 * 5 * BYTES,
    );
    assert.deepEqual(Object.fromEntries(bytes.map((s) => [s.metric['direction'], s.value])), {
      client_to_dest: 5 * BYTES,
      dest_to_client: 5 * BYTES,
    });
    const completed = await prometheus.waitFor(
      'agent_gateway_tunnels_closed_total{cause="completed"}',
      (s) => total(s) === 5,
    );
    assert.equal(completed.length, 1);
    const open = await prometheus.query('sum(agent_gateway_open_tunnels)');
    assert.equal(total(open), 0);
    const decisions = await prometheus.query('sum(agent_gateway_connect_duration_seconds_count)');
    assert.equal(total(decisions), 8);
    const policy = await prometheus.query(
      'agent_gateway_connect_phase_duration_seconds_count{phase="policy"}',
    );
    assert.equal(total(policy), 7, 'every CONNECT with an identity asked the policy');
  });

  test('per-identity series: the first identity of its own, the rest under identity=""', async () => {
    const perIdentity = await prometheus.waitFor(
      'agent_gateway_identity_tunnel_bytes_total{direction="client_to_dest"}',
      (s) => total(s) === 5 * BYTES,
    );
    // Prometheus drops empty labels: the overflow series has no identity label at all.
    const byIdentity = Object.fromEntries(perIdentity.map((s) => [s.metric['identity'] ?? '', s.value]));
    assert.deepEqual(byIdentity, { 'agent-prom-a': 4 * BYTES, '': BYTES });
  });
});
