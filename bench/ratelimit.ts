/**
 * Rate-limit benchmark: the achieved rate, measured outside the gateway (at the destination for
 * uploads, at the client for downloads), against the configured one, for 64 KiB/s … 100 MiB/s, 1, 4
 * and 16 tunnels of one identity, HTTP/1.1 and HTTP/2, upload and download, and bursts smaller than a
 * read. Results go to stdout as the markdown table of docs/BENCHMARKS.md.
 *
 *   npm run bench:ratelimit
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:ratelimit
 *   BENCH_FILTER='100 MiB/s' npm run bench:ratelimit      # only cases whose name contains this
 *   BENCH_H2_WINDOW=65535 npm run bench:ratelimit          # gateway's server.h2_stream_window_bytes
 *
 * Each case has its own identity (so every case starts from a full bucket) and runs for a bounded
 * time: a warm-up that covers the burst, then a measured steady part. All traffic is on 127.0.0.1.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { agentsAllowedTo } from '../test/helpers/agents.js';
import { curlViaGateway } from '../test/helpers/curl.js';
import { freshDatabase } from '../test/helpers/db.js';
import {
  type GatewayProcess,
  startGatewayProcess,
  writeGatewayConfig,
} from '../test/helpers/gateway-process.js';
import { createTestPki, type TestAgent, type TestPki } from '../test/helpers/pki.js';
import { createPrincipal, grantPermission, grantScope } from '../test/helpers/registry-rows.js';
import { ArrivalLog, caseStats, formatBytes, formatRate, percentError } from './ratelimit-stats.js';
import {
  type Destination,
  logArrivals,
  openTunnels,
  sendEndlessly,
  startArrivalSink,
  startPumpSource,
} from './ratelimit-traffic.js';

const run = promisify(execFile);
const KiB = 1024;
const MiB = 1024 * KiB;

if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];

type Protocol = 'HTTP/1.1' | 'HTTP/2';
type Direction = 'upload' | 'download';

interface Case {
  readonly name: string;
  readonly identity: string;
  readonly protocol: Protocol;
  readonly direction: Direction;
  readonly rate: number;
  readonly burst: number;
  readonly tunnels: number;
}

const RATES = [64 * KiB, 1 * MiB, 10 * MiB, 100 * MiB];

function buildCases(): Case[] {
  const cases: Case[] = [];
  const add = (c: Omit<Case, 'identity' | 'name'>, note = '') =>
    cases.push({
      ...c,
      identity: `bench-${cases.length}`,
      name: `${c.rate > 0 ? formatRate(c.rate) : 'unlimited'} ${c.protocol} ${c.direction} ×${c.tunnels}${note}`,
    });
  // The ceiling of this machine: what the same clients reach with no limit at all.
  for (const direction of ['upload', 'download'] as const) {
    for (const protocol of ['HTTP/1.1', 'HTTP/2'] as const) {
      for (const tunnels of [1, 16]) add({ protocol, direction, rate: 0, burst: 0, tunnels });
    }
  }
  for (const rate of RATES) {
    // A tenth of a second of burst (at least 16 KiB): small enough that the steady part dominates.
    const burst = Math.max(16 * KiB, Math.round(rate / 10));
    for (const direction of ['upload', 'download'] as const) {
      for (const protocol of ['HTTP/1.1', 'HTTP/2'] as const) {
        for (const tunnels of [1, 4, 16]) add({ protocol, direction, rate, burst, tunnels });
      }
    }
  }
  // Bursts smaller than one read (16 KiB TLS record / HTTP/2 frame up, 64 KiB TCP read down).
  for (const rate of RATES) {
    add({ protocol: 'HTTP/1.1', direction: 'upload', rate, burst: 4 * KiB, tunnels: 1 }, ', burst 4 KiB');
    add({ protocol: 'HTTP/2', direction: 'download', rate, burst: 4 * KiB, tunnels: 4 }, ', burst 4 KiB');
  }
  const filter = process.env['BENCH_FILTER'];
  return filter ? cases.filter((c) => c.name.includes(filter)) : cases;
}

/**
 * Warm-up and measured time of a case, in seconds. The warm-up covers the burst and the first read of
 * every tunnel: tunnels that start sending at the same moment each get one read through before the
 * bucket can hold them (debt that is then repaid), which is part of the whole-run figure.
 */
function timing(c: Case): { warm: number; measure: number } {
  if (c.rate === 0) return { warm: 0.3, measure: 2 };
  const read = c.direction === 'upload' ? 16 * KiB : 64 * KiB;
  const warm = (c.burst + (c.tunnels + 1) * read) / c.rate + 0.3;
  // At least 2 s, and at least six reads' worth of budget so low rates see several turns.
  const measure = Math.max(2, (6 * read) / c.rate);
  return { warm, measure };
}

function rateLimitToml(cases: readonly Case[], curlRate: number): string {
  const lines = ['[rate_limit]', 'bytes_per_second = 0'];
  for (const c of cases) {
    if (c.rate === 0) continue;
    lines.push(`[rate_limit.identities."${c.identity}"]`);
    if (c.direction === 'upload') lines.push(`bytes_per_second = ${c.rate}`, `burst_bytes = ${c.burst}`);
    else lines.push(`download_bytes_per_second = ${c.rate}`, `download_burst_bytes = ${c.burst}`);
  }
  lines.push(
    '[rate_limit.identities."bench-curl"]',
    `bytes_per_second = ${curlRate}`,
    `burst_bytes = ${Math.round(curlRate / 10)}`,
    `download_bytes_per_second = ${curlRate}`,
    `download_burst_bytes = ${Math.round(curlRate / 10)}`,
  );
  return lines.join('\n');
}

interface Row {
  readonly c: Case;
  readonly steady: string;
  readonly steadyErr: string;
  readonly wholeErr: string;
  readonly held: string;
  readonly spread: string;
}

async function runCase(
  c: Case,
  gateway: GatewayProcess,
  pki: TestPki,
  agent: TestAgent,
  sink: Destination,
  source: Destination,
): Promise<Row> {
  const { warm, measure } = timing(c);
  const log = new ArrivalLog();
  const destination = c.direction === 'upload' ? sink : source;
  const mark = gateway.logs.length;
  sink.capture(c.direction === 'upload' ? log : undefined);
  const tunnels = await openTunnels(
    c.protocol,
    gateway.port,
    { caPath: pki.caCertPath, agent },
    destination.port,
    c.tunnels,
  );
  const startedAt = performance.now();
  const senders = tunnels.streams.map((stream, i) => {
    if (c.direction === 'upload') {
      stream.resume();
      return sendEndlessly(stream);
    }
    logArrivals(stream, log, i);
    stream.write('g');
    return { stop() {} };
  });
  await sleep((warm + measure) * 1000);
  for (const s of senders) s.stop();
  tunnels.reset();
  sink.capture(undefined);
  const stats = caseStats(log, startedAt, warm, c.tunnels);
  const closed = await waitForClosed(gateway, mark, c.identity, c.tunnels);
  const held = Math.max(...closed.map((l) => Number(l['max_held_bytes'] ?? 0)));
  return {
    c,
    steady: formatRate(stats.steadyRate),
    steadyErr: c.rate > 0 ? percentError(stats.steadyRate, c.rate) : '–',
    wholeErr: c.rate > 0 ? percentError(stats.wholeRate, c.rate) : '–',
    held: formatBytes(held),
    spread: c.tunnels === 1 ? '–' : `${(stats.spread * 100).toFixed(1)}% (${formatBytes(stats.spreadBytes)})`,
  };
}

async function waitForClosed(
  gateway: GatewayProcess,
  mark: number,
  identity: string,
  count: number,
): Promise<Array<Record<string, unknown>>> {
  const matching = () =>
    gateway.logs.slice(mark).filter((l) => l.msg === 'tunnel closed' && l['source_identity'] === identity);
  const deadline = performance.now() + 60_000;
  while (matching().length < count) {
    if (performance.now() > deadline) {
      if (process.env['BENCH_VERBOSE']) {
        for (const l of gateway.logs.slice(mark)) process.stderr.write(`${JSON.stringify(l)}\n`);
      }
      throw new Error(`${identity}: ${matching().length} of ${count} tunnels closed`);
    }
    await sleep(20);
  }
  return matching();
}

/** curl through the gateway (HTTP/1.1 CONNECT): its own speed figures against the configured rate. */
async function curlRows(
  gateway: GatewayProcess,
  pki: TestPki,
  agent: TestAgent,
  rate: number,
  grant: (port: number) => Promise<void>,
): Promise<string[]> {
  const seconds = 4;
  const size = Math.round(rate / 10 + rate * seconds);
  const body = Buffer.alloc(size, 0x61);
  const server = createHttpServer((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-length': size });
      res.end(body);
      return;
    }
    req.resume();
    req.on('end', () => res.end('ok\n'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await grant(port);
  const upload = join(pki.dir, 'curl-upload.bin');
  await writeFile(upload, body);
  const common = [...curlViaGateway(gateway.port, pki.caCertPath, agent, 60), '-o', '/dev/null'];
  const rows: string[] = [];
  try {
    for (const [what, args, field] of [
      ['download', [], 'speed_download'],
      ['upload', ['--data-binary', `@${upload}`], 'speed_upload'],
    ] as const) {
      const { stdout } = await run(
        'curl',
        [...common, ...args, '-w', `%{${field}} %{time_total}`, `http://127.0.0.1:${port}/`],
        { encoding: 'utf8' },
      );
      const [speed, total] = stdout.trim().split(' ').map(Number);
      // curl's speed is size / total time, from before the proxy handshake: a whole-run figure that
      // includes the 0.1 s burst; subtracting the burst gives the rate it saw after it.
      const afterBurst = (size - rate / 10) / total!;
      rows.push(
        `| curl ${what} (HTTP/1.1), ${formatBytes(size)} | ${formatRate(rate)} | ${formatRate(speed!)} | ${percentError(speed!, rate)} | ${percentError(afterBurst, rate)} |`,
      );
    }
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  return rows;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function main(): Promise<void> {
  const cases = buildCases();
  const curlRate = 1 * MiB;
  const total = cases.reduce((s, c) => s + timing(c).warm + timing(c).measure, 0);
  process.stderr.write(
    `rate-limit benchmark: ${cases.length} cases, about ${Math.round(total)} s of traffic\n`,
  );
  const pki = await createTestPki();
  const db = await freshDatabase();
  const sink = await startArrivalSink();
  const source = await startPumpSource();
  let gateway: GatewayProcess | undefined;
  try {
    const principal = await createPrincipal(db.sql, 'bench-org');
    const destinations = [sink.port, source.port].map((p) => `127.0.0.1:${p}`);
    const identities = [...cases.map((c) => c.identity), 'bench-curl'];
    const agents = await agentsAllowedTo(db.sql, pki, principal, identities, destinations);
    const config = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraServer: process.env['BENCH_H2_WINDOW']
        ? `h2_stream_window_bytes = ${process.env['BENCH_H2_WINDOW']}`
        : '',
      extraEgress: rateLimitToml(cases, curlRate),
    });
    gateway = await startGatewayProcess(config);

    const rows: Row[] = [];
    for (const c of cases) {
      const row = await runCase(c, gateway, pki, agents.get(c.identity)!, sink, source);
      rows.push(row);
      process.stderr.write(
        `${c.name}: steady ${row.steady} (${row.steadyErr}), whole ${row.wholeErr}, held ${row.held}, spread ${row.spread}\n`,
      );
    }

    const curl = await curlBench(db, principal, agents.get('bench-curl')!, gateway, pki, curlRate);
    const out = [
      `Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${new Date().toISOString().slice(0, 10)}`,
      '',
      '| case | configured | steady achieved | steady error | whole-run error | max held in gateway | spread between tunnels |',
      '| --- | --- | --- | --- | --- | --- | --- |',
      ...rows.map(
        (r) =>
          `| ${r.c.name} | ${r.c.rate > 0 ? `${formatRate(r.c.rate)}, burst ${formatBytes(r.c.burst)}` : 'none'} | ${r.steady} | ${r.steadyErr} | ${r.wholeErr} | ${r.held} | ${r.spread} |`,
      ),
      '',
      '| real client | configured | curl speed | whole-run error | error after the burst |',
      '| --- | --- | --- | --- | --- |',
      ...curl,
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await gateway?.stop();
    await sink.close();
    await source.close();
    await db.drop();
    await pki.cleanup();
  }
}

/** Grants bench-curl a loopback HTTP server's port, then runs the curl rows against it. */
async function curlBench(
  db: Awaited<ReturnType<typeof freshDatabase>>,
  principal: Awaited<ReturnType<typeof createPrincipal>>,
  agent: TestAgent,
  gateway: GatewayProcess,
  pki: TestPki,
  rate: number,
): Promise<string[]> {
  return curlRows(gateway, pki, agent, rate, async (port) => {
    const destination = `127.0.0.1:${port}`;
    await grantScope(db.sql, principal.keyId, destination);
    await grantPermission(db.sql, {
      permissionId: `bench-curl-${port}`,
      principal,
      identity: 'bench-curl',
      agentSpki: agent.spkiDer,
      destination,
    });
  });
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench:ratelimit failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
