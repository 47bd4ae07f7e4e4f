/**
 * Shared-budget benchmark (docs/BENCHMARKS.md, "Budgets"):
 *
 * - window: the most bytes the sink received in any 1, 10 and 30 s window against rate x W (the
 *   attacker's ratio) and against the bound, for one gateway in memory, one gateway shared and two
 *   gateways shared; 1, 16 and 64 tunnels per gateway; HTTP/1.1 and HTTP/2 (exfil-test's strategies);
 * - leases: lease calls per second (pg_stat_user_functions) at 1 and 100 MiB/s;
 * - cost: throughput and gateway CPU per MiB of the shared limiter against the in-memory one and against
 *   no limit, one and eight tunnels;
 * - workers: server.workers = 1 against 2, unlimited identity: aggregate upload throughput over eight
 *   tunnels and new-connection tunnels per second, with the CPU of every gateway process.
 *
 *   npm run bench:budgets
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npm run bench:budgets
 *   BENCH_ONLY=window,leases,cost,workers BENCH_SECONDS=30 BENCH_RUNS=3 npm run bench:budgets
 *
 * Everything is on 127.0.0.1; every load is bounded in time (BENCH_SECONDS per window case, fixed byte
 * counts elsewhere). Prints markdown tables on stdout.
 */
import { cpus, loadavg } from 'node:os';
import { type CountingSink, startCountingSink } from '../src/exfil/sink.js';
import { leaseSize } from '../src/ratelimit/lease-size.js';
import { agentsAllowedTo } from '../test/helpers/agents.js';
import { agentEndpoint, drive } from '../test/helpers/budget-traffic.js';
import { type FreshDatabase, freshDatabase } from '../test/helpers/db.js';
import {
  type GatewayProcess,
  startGatewayProcess,
  writeGatewayConfig,
} from '../test/helpers/gateway-process.js';
import { createTestPki, type TestAgent, type TestPki } from '../test/helpers/pki.js';
import { createPrincipal } from '../test/helpers/registry-rows.js';
import { runLoad } from './load-runner.js';
import { cpuMs, type LoadTarget, MIB, median, startSink } from './suite-common.js';

const KiB = 1024;
if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];
const ONLY = new Set((process.env['BENCH_ONLY'] ?? 'window,leases,cost,workers').split(','));
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 30);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);

function log(text: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);
}

interface Bench {
  readonly pki: TestPki;
  readonly db: FreshDatabase;
  readonly agents: Map<string, TestAgent>;
  readonly sink: CountingSink;
  readonly authority: string;
  /** The upload sink of bench/suite-load.ts (header protocol), for the throughput jobs. */
  readonly loadSinkAuthority: string;
}

async function gatewaysWith(
  b: Bench,
  n: number,
  extra: { server?: string; egress: string },
): Promise<GatewayProcess[]> {
  const config = await writeGatewayConfig({
    dir: b.pki.dir,
    databaseUrl: b.db.url,
    certPath: b.pki.serverCertPath,
    keyPath: b.pki.serverKeyPath,
    extraServer: `h2_stream_window_bytes = 1048576\nh2_connection_window_bytes = 16777216\n${extra.server ?? ''}`,
    extraEgress: extra.egress,
  });
  const started: GatewayProcess[] = [];
  for (let i = 0; i < n; i++) started.push(await startGatewayProcess(config));
  return started;
}

/**
 * Resets the sink once nothing has arrived for 1.5 s (at most 90 s): tunnels of the previous case that
 * the client reset are still in the gateway (a paused socket does not see the reset) and drain what they
 * had buffered at their own identity's rate, into the same sink.
 */
async function quietSink(sink: CountingSink): Promise<void> {
  const until = Date.now() + 90_000;
  let last = -1;
  let stableSince = Date.now();
  while (Date.now() < until) {
    const total = await sink.total();
    if (total !== last) {
      last = total;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 1500) {
      break;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await sink.reset();
}

// ---- window -------------------------------------------------------------------------------------------

const WINDOW_RATE = 1 * MIB;
const WINDOW_BURST = 64 * KiB;
const WINDOW_STRATEGIES = ['h1-1', 'h1-16', 'h1-64', 'h2-1', 'h2-16', 'h2-64'] as const;
const WINDOW_CONFIGS = [
  { name: '1 gateway, in memory', shared: false, gateways: 1 },
  { name: '1 gateway, shared', shared: true, gateways: 1 },
  { name: '2 gateways, shared', shared: true, gateways: 2 },
] as const;

function windowIdentity(config: number, strategy: string): string {
  return `win-${config}-${strategy}`;
}

async function windowTable(b: Bench): Promise<string[]> {
  const lease = leaseSize({ bytesPerSecond: WINDOW_RATE, burstBytes: WINDOW_BURST });
  const windows = [1, 10, 30].filter((w) => w <= SECONDS);
  const rows: string[] = [];
  for (const [ci, config] of WINDOW_CONFIGS.entries()) {
    const gateways = await gatewaysWith(b, config.gateways, {
      egress: [
        '[rate_limit]',
        `shared = ${config.shared}`,
        `bytes_per_second = ${WINDOW_RATE}`,
        `burst_bytes = ${WINDOW_BURST}`,
      ].join('\n'),
    });
    try {
      for (const strategy of WINDOW_STRATEGIES) {
        const agent = b.agents.get(windowIdentity(ci, strategy))!;
        await quietSink(b.sink);
        await Promise.all(
          gateways.map((g) =>
            drive(agentEndpoint(g.port, b.pki.caCertPath, agent), b.authority, strategy, SECONDS * 1000),
          ),
        );
        await new Promise((r) => setTimeout(r, 300));
        const counter = await b.sink.snapshot();
        const g = config.gateways;
        const heldLease = config.shared ? g * lease : 0;
        const cells = windows.map((w) => {
          const most = counter.maxIn(w * 1000);
          const bound = WINDOW_RATE * w + WINDOW_BURST + heldLease;
          return `${(most / (WINDOW_RATE * w)).toFixed(3)} (bound ${(bound / (WINDOW_RATE * w)).toFixed(3)})`;
        });
        const row = `| ${config.name} | ${strategy.startsWith('h1') ? 'HTTP/1.1' : 'HTTP/2'} | ${strategy.split('-')[1]} | ${cells.join(' | ')} |`;
        rows.push(row);
        log(row);
      }
    } finally {
      for (const gw of gateways) await gw.stop();
    }
  }
  return [
    `Rate 1 MiB/s, burst 64 KiB, L = ${lease / KiB} KiB; ${SECONDS} s per case; each cell: the most bytes in any window of that length ÷ (rate × W), and in brackets the bound (rate × W + burst + G × L) ÷ (rate × W).`,
    '',
    `| gateways | protocol | tunnels per gateway | ${windows.map((w) => `${w} s`).join(' | ')} |`,
    `| --- | --- | --- | ${windows.map(() => '---').join(' | ')} |`,
    ...rows,
  ];
}

// ---- leases -------------------------------------------------------------------------------------------

async function functionCalls(b: Bench, name: string): Promise<number> {
  // Statistics reach the view at the end of each backend's transaction batch; a short wait lets them.
  await new Promise((r) => setTimeout(r, 1200));
  const [row] = await b.db.sql<{ calls: string | null }[]>`
    SELECT sum(calls)::text AS calls FROM pg_stat_user_functions WHERE schemaname = 'agent_gateway_ext' AND funcname = ${name}`;
  return Number(row?.calls ?? 0);
}

async function leaseTable(b: Bench): Promise<string[]> {
  const rows: string[] = [];
  for (const [rate, burst, identity] of [
    [1 * MIB, 64 * KiB, 'lease-1m'],
    [100 * MIB, 10 * MIB, 'lease-100m'],
  ] as const) {
    for (const gatewaysN of [1, 2]) {
      const gateways = await gatewaysWith(b, gatewaysN, {
        egress: [
          '[rate_limit]',
          'shared = true',
          `bytes_per_second = ${rate}`,
          `burst_bytes = ${burst}`,
        ].join('\n'),
      });
      try {
        const agent = b.agents.get(`${identity}-${gatewaysN}`)!;
        await quietSink(b.sink);
        const before = await functionCalls(b, 'budget_lease');
        const seconds = 10;
        await Promise.all(
          gateways.map((g) =>
            drive(agentEndpoint(g.port, b.pki.caCertPath, agent), b.authority, 'h1-16', seconds * 1000),
          ),
        );
        const counter = await b.sink.snapshot();
        const calls = (await functionCalls(b, 'budget_lease')) - before;
        const achieved = counter.total / seconds;
        const row = `| ${rate / MIB} MiB/s | ${gatewaysN} | ${(leaseSize({ bytesPerSecond: rate, burstBytes: burst }) / KiB).toFixed(0)} KiB | ${(achieved / MIB).toFixed(2)} MiB/s | ${(calls / seconds).toFixed(1)} | ${(calls / seconds / gatewaysN).toFixed(1)} | ${calls > 0 ? (counter.total / calls / KiB).toFixed(0) : '–'} KiB |`;
        rows.push(row);
        log(row);
      } finally {
        for (const gw of gateways) await gw.stop();
      }
    }
  }
  return [
    '16 HTTP/1.1 tunnels per gateway, 10 s; calls counted by PostgreSQL (`pg_stat_user_functions`, `track_functions = all`), every call including those that granted nothing.',
    '',
    '| rate | gateways | L | achieved | lease calls/s | per gateway | bytes per call |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows,
  ];
}

// ---- cost ---------------------------------------------------------------------------------------------

/** An upload job's target: `agent` through `gateway` to the suite's counting sink. */
function loadTarget(b: Bench, gateway: GatewayProcess, agent: TestAgent): LoadTarget {
  return {
    kind: 'h1',
    port: gateway.port,
    authority: b.loadSinkAuthority,
    caPath: b.pki.caCertPath,
    certPath: agent.certPath,
    keyPath: agent.keyPath,
  };
}

async function costTable(b: Bench): Promise<string[]> {
  const limits = (shared: boolean) =>
    [
      '[rate_limit]',
      `shared = ${shared}`,
      'max_tunnels_per_identity = 0',
      '[rate_limit.identities."cost-1g"]',
      `bytes_per_second = ${1024 * MIB}`,
      `burst_bytes = ${64 * MIB}`,
      '[rate_limit.identities."cost-100m"]',
      `bytes_per_second = ${100 * MIB}`,
      `burst_bytes = ${10 * MIB}`,
    ].join('\n');
  // No [rate_limit] section at all: the relay with no gate, against which an unlimited identity's cost
  // under configured limits is judged (issue 11: at most 1.05× the CPU per MiB).
  const [off] = await gatewaysWith(b, 1, { egress: '' });
  const [local] = await gatewaysWith(b, 1, { egress: limits(false) });
  const [shared] = await gatewaysWith(b, 1, { egress: limits(true) });
  const series = new Map<string, { mibs: number[]; cpu: number[] }>();
  try {
    // A first transfer through each process, unmeasured: the first one in a fresh process runs cold (JIT).
    for (const gateway of [off!, local!, shared!]) {
      await runLoad({
        op: 'transfer',
        target: loadTarget(b, gateway, b.agents.get('cost-free')!),
        direction: 'up',
        bytes: 128 * MIB,
        streams: 1,
      });
    }
    for (let run = 0; run < RUNS; run++) {
      for (const [label, gateway, identity] of [
        ['limits off (no [rate_limit])', off!, 'cost-free'],
        ['no limit for this identity, limits on', local!, 'cost-free'],
        ['1 GiB/s, in memory', local!, 'cost-1g'],
        ['1 GiB/s, shared', shared!, 'cost-1g'],
        ['100 MiB/s, in memory', local!, 'cost-100m'],
        ['100 MiB/s, shared', shared!, 'cost-100m'],
      ] as const) {
        for (const streams of [1, 8]) {
          const target = loadTarget(b, gateway, b.agents.get(identity)!);
          const bytes = (identity === 'cost-100m' ? 256 : 512) * MIB;
          const c0 = cpuMs(gateway.child.pid!);
          const r = await runLoad({
            op: 'transfer',
            target,
            direction: 'up',
            bytes: bytes / streams,
            streams,
          });
          const cpu = cpuMs(gateway.child.pid!) - c0;
          const key = `${label}|${streams}`;
          const s = series.get(key) ?? { mibs: [], cpu: [] };
          s.mibs.push(bytes / MIB / r.seconds);
          s.cpu.push(cpu / (bytes / MIB));
          series.set(key, s);
          log(
            `cost ${key} run ${run}: ${(bytes / MIB / r.seconds).toFixed(1)} MiB/s, ${(cpu / (bytes / MIB)).toFixed(2)} ms/MiB`,
          );
        }
      }
    }
  } finally {
    await off?.stop();
    await local?.stop();
    await shared?.stop();
  }
  const rows = [...series].map(([key, s]) => {
    const [label, streams] = key.split('|');
    const range = (xs: number[], d: number) =>
      `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
    return `| ${label} | ${streams} | ${range(s.mibs, 1)} | ${range(s.cpu, 2)} |`;
  });
  return [
    `HTTP/1.1 upload through one gateway, 512 MiB per run (256 MiB at 100 MiB/s), ${RUNS} runs interleaved; median (min–max).`,
    '',
    '| limit | tunnels | MiB/s | gateway CPU ms per MiB |',
    '| --- | --- | --- | --- |',
    ...rows,
  ];
}

// ---- workers ------------------------------------------------------------------------------------------

function treeCpuMs(gateway: GatewayProcess): number {
  const pids = [
    gateway.child.pid!,
    ...gateway.logs.filter((l) => l.msg === 'worker started').map((l) => Number(l['worker_pid'])),
  ];
  let total = 0;
  for (const pid of pids) {
    try {
      total += cpuMs(pid);
    } catch {
      // A worker that exited: its CPU is no longer readable (none exits during a run).
    }
  }
  return total;
}

async function workersTable(b: Bench): Promise<string[]> {
  const unlimited = '[rate_limit]\nmax_tunnels_per_identity = 0';
  const gateways = new Map<number, GatewayProcess>();
  for (const n of [1, 2]) {
    const [g] = await gatewaysWith(b, 1, { server: `workers = ${n}`, egress: unlimited });
    if (n > 1)
      await g!.waitForLog(
        () => g!.logs.filter((l) => l.msg === 'listening').length >= n,
        'workers listening',
      );
    gateways.set(n, g!);
  }
  const agent = b.agents.get('workers')!;
  const results = new Map<string, number[]>();
  const add = (key: string, v: number) => results.set(key, [...(results.get(key) ?? []), v]);
  const targetOf = (gateway: GatewayProcess): LoadTarget => loadTarget(b, gateway, agent);
  try {
    // Unmeasured warm-up of every worker (round robin spreads the eight tunnels).
    for (const gateway of gateways.values()) {
      await runLoad({
        op: 'transfer',
        target: targetOf(gateway),
        direction: 'up',
        bytes: 16 * MIB,
        streams: 8,
      });
    }
    for (let run = 0; run < RUNS; run++) {
      for (const [n, gateway] of gateways) {
        const target = targetOf(gateway);
        let c0 = treeCpuMs(gateway);
        const t = await runLoad({ op: 'transfer', target, direction: 'up', bytes: 32 * MIB, streams: 8 });
        add(`${n}|mibs`, 256 / t.seconds);
        add(`${n}|cpu_mib`, (treeCpuMs(gateway) - c0) / 256);
        c0 = treeCpuMs(gateway);
        const o = await runLoad({ op: 'open', target, count: 1000, concurrency: 32, resume: false });
        add(`${n}|tps`, 1000 / o.seconds);
        add(`${n}|cpu_tunnel`, (treeCpuMs(gateway) - c0) / 1000);
        log(
          `workers ${n} run ${run}: ${(256 / t.seconds).toFixed(0)} MiB/s, ${(1000 / o.seconds).toFixed(0)} tunnels/s`,
        );
      }
    }
  } finally {
    for (const g of gateways.values()) await g.stop();
  }
  const cell = (key: string, d: number) => {
    const xs = results.get(key) ?? [];
    return `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
  };
  return [
    `Unlimited identity, HTTP/1.1; ${RUNS} runs, 1 and 2 workers interleaved; median (min–max). CPU is the primary's plus every worker's.`,
    '',
    '| workers | upload, 8 tunnels, MiB/s | gateway CPU ms per MiB | new-connection tunnels/s (32 concurrent) | gateway CPU ms per tunnel |',
    '| --- | --- | --- | --- | --- |',
    ...[1, 2].map(
      (n) =>
        `| ${n} | ${cell(`${n}|mibs`, 0)} | ${cell(`${n}|cpu_mib`, 2)} | ${cell(`${n}|tps`, 0)} | ${cell(`${n}|cpu_tunnel`, 2)} |`,
    ),
  ];
}

// ---- main ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const pki = await createTestPki();
  const db = await freshDatabase();
  // Counted per function for the lease table; applies to connections opened from now on.
  const [current] = await db.sql<{ name: string }[]>`SELECT current_database() AS name`;
  await db.sql.unsafe(`ALTER DATABASE "${current!.name}" SET track_functions = 'all'`);
  const sink = await startCountingSink('127.0.0.1', 0);
  const loadSink = await startSink();
  const authority = `127.0.0.1:${sink.port}`;
  const loadSinkAuthority = `127.0.0.1:${loadSink.port}`;
  const principal = await createPrincipal(db.sql, 'bench-budgets');
  const identities = [
    ...WINDOW_CONFIGS.flatMap((_, ci) => WINDOW_STRATEGIES.map((s) => windowIdentity(ci, s))),
    'lease-1m-1',
    'lease-1m-2',
    'lease-100m-1',
    'lease-100m-2',
    'cost-free',
    'cost-1g',
    'cost-100m',
    'workers',
  ];
  const agents = await agentsAllowedTo(db.sql, pki, principal, identities, [authority, loadSinkAuthority]);
  const b: Bench = { pki, db, agents, sink, authority, loadSinkAuthority };
  const out: string[] = [
    `Node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}), ${new Date().toISOString().slice(0, 16)} UTC; load average before: ${loadavg()
      .map((l) => l.toFixed(2))
      .join(', ')}`,
    '',
  ];
  try {
    if (ONLY.has('window')) out.push('#### Budget error by window', '', ...(await windowTable(b)), '');
    if (ONLY.has('leases')) out.push('#### Lease calls', '', ...(await leaseTable(b)), '');
    if (ONLY.has('cost')) out.push('#### Throughput cost', '', ...(await costTable(b)), '');
    if (ONLY.has('workers')) out.push('#### 1 against 2 workers', '', ...(await workersTable(b)), '');
    out.push(
      `load average after: ${loadavg()
        .map((l) => l.toFixed(2))
        .join(', ')}`,
    );
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await sink.close();
    await loadSink.close();
    await db.drop();
    await pki.cleanup();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `bench:budgets failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
