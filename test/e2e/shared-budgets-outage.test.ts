import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import postgres from 'postgres';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/devdb/embedded.js';
import { type CountingSink, startCountingSink } from '../../src/exfil/sink.js';
import { leaseSize } from '../../src/ratelimit/lease-size.js';
import { migrate } from '../../src/registry/migrate.js';
import { agentsAllowedTo } from '../helpers/agents.js';
import { agentEndpoint, startDriving, untilSinkHas } from '../helpers/budget-traffic.js';
import {
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import { createPrincipal } from '../helpers/registry-rows.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const RATE = 128 * KiB;
const BURST = 64 * KiB;

/**
 * The shared budget store (the registry database, its own embedded PostgreSQL here so that it can be
 * stopped) goes away under traffic and comes back: a limited identity's open tunnel spends what its
 * gateway had leased and is then held, an unlimited identity's open tunnel keeps flowing, the outage is
 * logged once, and the held tunnel resumes by itself when the store is back. Bytes are counted by the
 * test's sinks; waits are for byte counts and log lines, bounded by the test's timeout.
 */
let pki: TestPki;
let dir: string;
let db: EmbeddedPostgres;
let gateway: GatewayProcess;
let limitedSink: CountingSink;
let freeSink: CountingSink;
let agents: Map<string, TestAgent>;

before(async () => {
  pki = await createTestPki();
  dir = await mkdtemp(join(tmpdir(), 'ag-budget-outage-'));
  await chmod(dir, 0o755);
  db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true });
  limitedSink = await startCountingSink('127.0.0.1', 0);
  freeSink = await startCountingSink('127.0.0.1', 0);
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await migrate(sql);
    const principal = await createPrincipal(sql, 'org-budget-outage');
    agents = await agentsAllowedTo(
      sql,
      pki,
      principal,
      ['agent-limited', 'agent-free'],
      [`127.0.0.1:${limitedSink.port}`, `127.0.0.1:${freeSink.port}`],
    );
  } finally {
    await sql.end();
  }
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      // Open tunnels outlive the outage (the live check would close them after the grace).
      extraPolicy:
        'connect_timeout_ms = 1000\npool_acquire_timeout_ms = 500\nquery_timeout_ms = 500\nrevalidation_grace_s = 120',
      extraEgress: [
        '[rate_limit]',
        'shared = true',
        '[rate_limit.identities."agent-limited"]',
        `bytes_per_second = ${RATE}`,
        `burst_bytes = ${BURST}`,
      ].join('\n'),
    }),
  );
});

after(async () => {
  await gateway?.stop();
  await db?.stop();
  await limitedSink?.close();
  await freeSink?.close();
  await rm(dir, { recursive: true, force: true });
  await pki?.cleanup();
});

test('store down: limited tunnels spend their lease and are held, unlimited ones flow; back: resumes, warned once', {
  timeout: 120_000,
}, async () => {
  const limited = startDriving(
    agentEndpoint(gateway.port, pki.caCertPath, agents.get('agent-limited')!),
    `127.0.0.1:${limitedSink.port}`,
    'h1-1',
  );
  const free = startDriving(
    agentEndpoint(gateway.port, pki.caCertPath, agents.get('agent-free')!),
    `127.0.0.1:${freeSink.port}`,
    'h2-1',
  );
  try {
    await untilSinkHas(limitedSink, 2 * BURST);
    await untilSinkHas(freeSink, 4 * MiB);

    await db.stop();
    const isDown = (l: LogLine) => l.msg === 'budget store unavailable';
    await gateway.waitForLog(isDown, 'budget store unavailable');
    const limitedAtOutage = await limitedSink.total();
    // The free identity is not affected: 16 MiB more through its open tunnel while the store is away.
    const freeAtOutage = await freeSink.total();
    await untilSinkHas(freeSink, freeAtOutage + 16 * MiB);
    // Long enough that an unheld tunnel would move four leases at its rate (2 s x 128 KiB/s).
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const limitedDuring = (await limitedSink.total()) - limitedAtOutage;
    // The limited one had at most one lease (L) when the outage was noticed, and nothing more comes.
    const lease = leaseSize({ bytesPerSecond: RATE, burstBytes: BURST });
    assert.ok(limitedDuring <= lease, `${limitedDuring} bytes of a limited identity with the store away`);
    assert.equal(gateway.child.exitCode, null, 'the gateway stays up');

    db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true, port: db.port });
    await gateway.waitForLog((l) => l.msg === 'budget store available', 'budget store available');
    const limitedBack = await limitedSink.total();
    await untilSinkHas(limitedSink, limitedBack + 2 * BURST);
    assert.equal(gateway.logs.filter(isDown).length, 1, 'the outage is logged once');
  } finally {
    await limited.stop();
    await free.stop();
  }
});
