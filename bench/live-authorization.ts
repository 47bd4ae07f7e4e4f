/**
 * Live authorization, measured from outside the gateway (issue 12):
 * 1. revocation → close: 1,000 open tunnels (100 agents × 5 HTTP/1.1 + 5 HTTP/2), then their 100
 *    permissions revoked with plain SQL one after another; for each, the time from the UPDATE's commit
 *    to each of its 10 tunnels being closed at the client. With the registry extension (NOTIFY) and
 *    without it (periodic re-check every policy.revalidation_interval_ms);
 * 2. expiry → close: tunnels whose permission's not_after passes; the time from not_after (database
 *    clock, mapped onto ours) to the close at the client;
 * 3. CONNECT→200 on an existing HTTP/2 connection with the default configuration (decision cache on,
 *    extension present) against the cache off and a registry without the extension.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx bench/live-authorization.ts
 *
 * Without BENCH_DATABASE_URL an embedded PostgreSQL is started. All traffic is on 127.0.0.1; every loop
 * is bounded in count and time.
 */
import type { ClientHttp2Session } from 'node:http2';
import type { Duplex } from 'node:stream';
import { migrate } from '../src/registry/migrate.js';
import { type ClientTls, h2Connect, h2Session, http1Connect } from '../test/helpers/clients.js';
import { type FreshDatabase, freshDatabase } from '../test/helpers/db.js';
import {
  type GatewayProcess,
  startGatewayProcess,
  writeGatewayConfig,
} from '../test/helpers/gateway-process.js';
import { startEchoServer } from '../test/helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../test/helpers/pki.js';
import { createPrincipal, grantPermission, grantScope } from '../test/helpers/registry-rows.js';
import { median, percentile } from './suite-common.js';

if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];

const AGENTS = Number(process.env['BENCH_AGENTS'] ?? 100);
const PER_PROTOCOL = Number(process.env['BENCH_TUNNELS_PER_PROTOCOL'] ?? 5);
const EXPIRING = Number(process.env['BENCH_EXPIRING'] ?? 50);
const CONNECTS = Number(process.env['BENCH_CONNECTS'] ?? 2000);
/** No single close may take longer than this; the run fails rather than wait forever. */
const CLOSE_DEADLINE_MS = 5000;

interface Agent {
  readonly n: number;
  readonly permissionId: string;
  readonly tls: ClientTls;
}

async function setup(
  pki: TestPki,
  db: FreshDatabase,
  destination: string,
  count: number,
  prefix: string,
  notAfterSql?: (i: number) => string,
) {
  const principal = await createPrincipal(db.sql, `org-${prefix}`);
  await grantScope(db.sql, principal.keyId, destination);
  const agents: Agent[] = [];
  for (let n = 0; n < count; n++) {
    const identity = `agent-${prefix}-${n}`;
    const agent = await pki.agent(identity);
    const permissionId = `perm-${prefix}-${n}`;
    await grantPermission(db.sql, {
      permissionId,
      principal,
      identity,
      agentSpki: agent.spkiDer,
      destination,
      ...(notAfterSql ? { notAfterSql: notAfterSql(n) } : {}),
    });
    agents.push({ n, permissionId, tls: { caPath: pki.caCertPath, agent } });
  }
  return agents;
}

function closedAt(stream: Duplex): Promise<number> {
  return new Promise((resolve) => {
    stream.on('error', () => {});
    if (stream.destroyed) resolve(performance.now());
    stream.once('close', () => resolve(performance.now()));
  });
}

function withDeadline<T>(work: Promise<T>, what: string): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: not within ${CLOSE_DEADLINE_MS} ms`)), CLOSE_DEADLINE_MS),
    ),
  ]);
}

/** Opens PER_PROTOCOL tunnels over each protocol for `agent`; resolves with their close times. */
async function openTunnels(gateway: GatewayProcess, agent: Agent, destination: string) {
  const closes: Array<Promise<number>> = [];
  const sockets: Duplex[] = [];
  for (let i = 0; i < PER_PROTOCOL; i++) {
    const r = await http1Connect(gateway.port, agent.tls, destination);
    if (r.status !== 200) throw new Error(`HTTP/1.1 CONNECT ${r.status}`);
    r.socket.resume();
    closes.push(closedAt(r.socket));
    sockets.push(r.socket);
  }
  let session: ClientHttp2Session | undefined;
  if (PER_PROTOCOL > 0) session = await h2Session(gateway.port, agent.tls);
  for (let i = 0; i < PER_PROTOCOL && session; i++) {
    const r = await h2Connect(session, destination);
    if (r.status !== 200) throw new Error(`HTTP/2 CONNECT ${r.status}`);
    r.stream.resume();
    closes.push(closedAt(r.stream));
  }
  return { closes, session, sockets };
}

function summary(label: string, xs: readonly number[]): string {
  return `| ${label} | ${xs.length} | ${median(xs).toFixed(1)} | ${percentile(xs, 99).toFixed(1)} | ${Math.max(...xs).toFixed(1)} |`;
}

async function revocationRun(pki: TestPki, extension: boolean): Promise<number[]> {
  const db = await freshDatabase({ migrate: false });
  await migrate(db.sql, { extension });
  const echo = await startEchoServer();
  const destination = `127.0.0.1:${echo.port}`;
  const agents = await setup(pki, db, destination, AGENTS, extension ? 'notify' : 'poll');
  const gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraServer: 'h2_max_concurrent_streams = 256\nmax_connections_per_source = 5000',
    }),
  );
  const latencies: number[] = [];
  const sessions: Array<ClientHttp2Session | undefined> = [];
  try {
    await gateway.waitForLog((l) => l.msg === 'live check healthy', 'live check');
    const open = [];
    for (const agent of agents) open.push(await openTunnels(gateway, agent, destination));
    for (const o of open) sessions.push(o.session);
    process.stderr.write(
      `${extension ? 'notify' : 'poll'}: ${open.reduce((n, o) => n + o.closes.length, 0)} tunnels open\n`,
    );
    for (const [i, agent] of agents.entries()) {
      await db.sql`UPDATE permission_registry SET revoked_at = now() WHERE permission_id = ${agent.permissionId}`;
      const committed = performance.now();
      const closes = await withDeadline(Promise.all(open[i]!.closes), `revocation ${i}`);
      for (const t of closes) latencies.push(t - committed);
    }
  } finally {
    for (const s of sessions) s?.destroy();
    await gateway.stop();
    await echo.close();
    await db.drop();
  }
  return latencies;
}

async function expiryRun(pki: TestPki): Promise<number[]> {
  const db = await freshDatabase();
  const echo = await startEchoServer();
  const destination = `127.0.0.1:${echo.port}`;
  // Staggered over 4-6 s from now, so the re-checks and the timers are exercised at different phases.
  const agents = await setup(
    pki,
    db,
    destination,
    EXPIRING,
    'expiry',
    (n) => `now() + interval '${4000 + (n * 2000) / EXPIRING} milliseconds'`,
  );
  const gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
    }),
  );
  const latencies: number[] = [];
  try {
    const closes: Array<Promise<number>> = [];
    const sockets: Duplex[] = [];
    for (const agent of agents) {
      const r = await http1Connect(gateway.port, agent.tls, destination);
      if (r.status !== 200) throw new Error(`CONNECT ${r.status}`);
      r.socket.resume();
      sockets.push(r.socket);
      closes.push(closedAt(r.socket));
    }
    // Each row's not_after on our clock: the database's "seconds until" read at a known local instant.
    const asked = performance.now();
    const rows = await db.sql<{ id: string; ms: number }[]>`
      SELECT permission_id AS id, (extract(epoch FROM (not_after - now())) * 1000)::float8 AS ms
      FROM permission_registry`;
    const answered = performance.now();
    const localOf = new Map(rows.map((r) => [r.id, (asked + answered) / 2 + r.ms]));
    for (const [i, agent] of agents.entries()) {
      const at = await withDeadline(closes[i]!, `expiry ${i}`).catch(async () => closes[i]!);
      latencies.push(at - localOf.get(agent.permissionId)!);
    }
    for (const s of sockets) s.destroy();
  } finally {
    await gateway.stop();
    await echo.close();
    await db.drop();
  }
  return latencies;
}

async function connectLatency(pki: TestPki, label: string, opts: { extension: boolean; cacheMs?: number }) {
  const db = await freshDatabase({ migrate: false });
  await migrate(db.sql, { extension: opts.extension });
  const echo = await startEchoServer();
  const destination = `127.0.0.1:${echo.port}`;
  const [agent] = await setup(pki, db, destination, 1, `lat-${label.replace(/\W+/g, '-')}`);
  const gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      ...(opts.cacheMs === undefined ? {} : { extraPolicy: `decision_cache_ms = ${opts.cacheMs}` }),
    }),
  );
  const samples: number[] = [];
  try {
    await gateway.waitForLog((l) => l.msg === 'live check healthy', 'live check');
    const session = await h2Session(gateway.port, agent!.tls);
    for (let i = 0; i < CONNECTS; i++) {
      const t0 = performance.now();
      const r = await h2Connect(session, destination);
      const t1 = performance.now();
      if (r.status !== 200) throw new Error(`CONNECT ${r.status}`);
      // Ended the polite way (END_STREAM; the echo server ends too): nghttp2 in the gateway ends a
      // session that sends more than server.h2_reset_burst RST_STREAMs in a burst (rapid reset).
      const closed = new Promise((resolve) => r.stream.once('close', resolve));
      r.stream.resume();
      r.stream.end();
      await closed;
      if (i >= 100) samples.push(t1 - t0); // the first 100 warm the JIT and the pool
    }
    session.close();
  } finally {
    await gateway.stop();
    await echo.close();
    await db.drop();
  }
  return `| ${label} | ${samples.length} | ${median(samples).toFixed(2)} | ${percentile(samples, 99).toFixed(2)} | ${Math.max(...samples).toFixed(1)} |`;
}

async function main() {
  const pki = await createTestPki();
  try {
    const notify = await revocationRun(pki, true);
    const poll = await revocationRun(pki, false);
    const expiry = await expiryRun(pki);
    console.log(
      `\nRevocation and expiry → close at the client (${AGENTS} permissions × ${2 * PER_PROTOCOL} tunnels), ms`,
    );
    console.log('| case | closes | p50 | p99 | max |');
    console.log('| --- | --- | --- | --- | --- |');
    console.log(summary('revoked with SQL, registry with the extension (NOTIFY)', notify));
    console.log(summary('revoked with SQL, registry without it (re-check every 500 ms)', poll));
    console.log(summary(`not_after passed (${EXPIRING} tunnels, after not_after)`, expiry));
    console.log(
      `\nCONNECT→200 on an existing HTTP/2 connection, sequential, ${CONNECTS - 100} samples after 100 warm-up, ms`,
    );
    console.log('| configuration | samples | p50 | p99 | max |');
    console.log('| --- | --- | --- | --- | --- |');
    console.log(
      await connectLatency(pki, 'default (decision cache 10 s, extension present)', { extension: true }),
    );
    console.log(await connectLatency(pki, 'decision_cache_ms = 0', { extension: true, cacheMs: 0 }));
    console.log(
      await connectLatency(pki, 'registry without the extension (cache stays off)', { extension: false }),
    );
  } finally {
    await pki.cleanup();
  }
}

await main();
