import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/devdb/embedded.js';
import { migrate } from '../../src/registry/migrate.js';
import { runCli } from '../helpers/cli-runner.js';
import { type ClientTls, echoOrClose, http1Connect } from '../helpers/clients.js';
import {
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

/**
 * Issue 14, health and outages: /readyz follows the registry (down at start, back, down again, back)
 * without the gateway exiting, SIGTERM turns readiness false before the listener closes, and a registry
 * at the wrong schema stops the gateway (exit 1), at start or when it first answers. The registry is an
 * embedded PostgreSQL of this file's own, so it can be stopped.
 */
const TOKEN = 'r'.repeat(32);
let pki: TestPki;
let dir: string;
let db: EmbeddedPostgres;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let tls: ClientTls;
let destination: string;

before(async () => {
  pki = await createTestPki();
  dir = await mkdtemp(join(tmpdir(), 'ag-ready-'));
  // As root the server runs as the postgres user, which must reach its data directory.
  await chmod(dir, 0o755);
  db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true });
  echo = await startEchoServer();
  destination = `127.0.0.1:${echo.port}`;
  const agent = await pki.agent('agent-ready');
  tls = { caPath: pki.caCertPath, agent };
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await migrate(sql);
    await grantLoopbackPorts(sql, { identity: 'agent-ready', agentSpki: agent.spkiDer, ports: [echo.port] });
  } finally {
    await sql.end();
  }
});

after(async () => {
  await db?.stop();
  await echo?.close();
  await rm(dir, { recursive: true, force: true });
  await pki?.cleanup();
});

async function startGateway(
  databaseUrl: string,
  drainDelayS = 0,
): Promise<{ gateway: GatewayProcess; admin: string }> {
  const gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      drainDelayS,
      extraPolicy: 'connect_timeout_ms = 1000\npool_acquire_timeout_ms = 500\nquery_timeout_ms = 500',
      extraTables: '[admin]\nlisten_addr = "127.0.0.1:0"',
    }),
    { AGENT_GATEWAY_ADMIN_TOKEN: TOKEN },
  );
  const line = await gateway.waitForLog((l) => l.msg === 'admin listening', 'admin listening');
  return { gateway, admin: `http://${String(line['admin_addr'])}` };
}

interface Readiness {
  readonly status: number;
  readonly checks: Record<string, boolean>;
}

async function readiness(admin: string): Promise<Readiness> {
  const res = await fetch(`${admin}/readyz`);
  const body = (await res.json()) as { checks: Array<{ name: string; ok: boolean }> };
  return { status: res.status, checks: Object.fromEntries(body.checks.map((c) => [c.name, c.ok])) };
}

/** Polls /readyz (every 200 ms, at most 150 times) until it answers `status`. */
async function readyzBecomes(admin: string, status: number): Promise<Readiness> {
  let last: Readiness | undefined;
  for (let i = 0; i < 150; i++) {
    last = await readiness(admin);
    if (last.status === status) return last;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`/readyz never answered ${status}; last: ${JSON.stringify(last)}`);
}

async function connectStatus(port: number): Promise<number> {
  return echoOrClose(await http1Connect(port, tls, destination), 'x');
}

async function metric(admin: string, name: string): Promise<number> {
  const text = await (
    await fetch(`${admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  ).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

describe('readiness follows the registry', { timeout: 120_000 }, () => {
  test('down at start: listening but unready, denying; ready once it answers; unready again when it stops', async () => {
    await db.stop();
    const { gateway, admin } = await startGateway(db.url);
    try {
      const unavailable = await gateway.waitForLog(
        (l) => l.msg === 'registry unavailable',
        'registry unavailable',
      );
      assert.equal(unavailable['level'], 'warn');
      assert.ok(
        gateway.logs.indexOf(unavailable) < gateway.logs.findIndex((l) => l.msg === 'listening'),
        'the outage is logged before listening',
      );
      assert.equal((await fetch(`${admin}/healthz`)).status, 200, 'alive');
      const down = await readiness(admin);
      assert.equal(down.status, 503);
      assert.equal(down.checks['registry'], false);
      assert.equal(down.checks['listening'], true);
      assert.equal(await connectStatus(gateway.port), 403, 'denied while the registry is down');
      const denial = await gateway.waitForLog((l) => l.msg === 'CONNECT denied', 'CONNECT denied');
      assert.equal(denial['deny_reason'], 'policy_error');
      assert.equal(await metric(admin, 'agent_gateway_registry_up'), 0);
      assert.equal(await metric(admin, 'agent_gateway_ready'), 0);

      db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true, port: db.port });
      await readyzBecomes(admin, 200);
      await gateway.waitForLog((l) => l.msg === 'registry available', 'registry available');
      assert.equal(await connectStatus(gateway.port), 200, 'allowed once the registry answers');
      assert.equal(await metric(admin, 'agent_gateway_registry_up'), 1);

      // Down again, with no CONNECT traffic: the registry listener's heartbeat notices.
      await db.stop();
      const again = await readyzBecomes(admin, 503);
      assert.equal(again.checks['registry'], false);
      assert.ok(gateway.logs.filter((l: LogLine) => l.msg === 'registry unavailable').length >= 2);
      assert.ok((await metric(admin, 'agent_gateway_registry_outages_total')) >= 2);

      db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true, port: db.port });
      await readyzBecomes(admin, 200);
      assert.equal(gateway.child.exitCode, null, 'the gateway never exited');
    } finally {
      await gateway.stop();
    }
  });

  test('SIGTERM: readiness false first while agents are still served, then the listener closes', async () => {
    const { gateway, admin } = await startGateway(db.url, 5);
    await readyzBecomes(admin, 200);
    gateway.child.kill('SIGTERM');
    const started = await gateway.waitForLog((l) => l.msg === 'shutdown started', 'shutdown started');
    assert.equal(started['drain_delay_ms'], 5000);
    const draining = await readiness(admin);
    assert.equal(draining.status, 503);
    assert.equal(draining.checks['draining'], false);
    assert.equal(await connectStatus(gateway.port), 200, 'still served during the drain delay');
    assert.equal(await gateway.exited, 0);
    const closedAt = gateway.logs.findIndex((l) => l.msg === 'shutdown complete');
    assert.ok(closedAt > gateway.logs.indexOf(started));
  });
});

describe('a registry at the wrong schema', { timeout: 120_000 }, () => {
  let other: EmbeddedPostgres;
  before(async () => {
    other = await startEmbeddedPostgres({ dataDir: join(dir, 'pg-wrong'), persistent: true });
    const sql = postgres(other.url, { max: 1, onnotice: () => {} });
    try {
      await migrate(sql);
      await sql`UPDATE agent_gateway_schema_version SET version = 99`;
    } finally {
      await sql.end();
    }
  });
  after(async () => {
    await other?.stop();
  });

  test('at start: exit 1 naming the versions', async () => {
    const config = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: other.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
    });
    const r = await runCli(['serve', '--config', config]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /registry schema is version 99, this gateway needs 1/);
  });

  test('down at start, then answering at the wrong schema: the gateway stops with exit 1', async () => {
    await other.stop();
    const { gateway } = await startGateway(other.url);
    await gateway.waitForLog((l) => l.msg === 'registry unavailable', 'registry unavailable');
    other = await startEmbeddedPostgres({
      dataDir: join(dir, 'pg-wrong'),
      persistent: true,
      port: other.port,
    });
    const fatal = await gateway.waitForLog((l) => l.msg === 'registry schema mismatch', 'schema mismatch');
    assert.match(String(fatal['error']), /version 99/);
    assert.equal(await gateway.exited, 1);
  });
});
