/**
 * Side-by-side suite (`npm run bench`): the gateway (HTTP/1.1 and HTTP/2 CONNECT, real registry with a
 * signed permission) against a bare Node mTLS relay (bench/bare-relay.ts) and Squid (mTLS https_port),
 * all on loopback, in one run. Writes the table into docs/BENCHMARKS.md between the suite markers.
 *
 *   npm run bench
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres BENCH_RUNS=3 npm run bench
 *
 * Processes: this orchestrator (also the sink), one load-generator process per measurement
 * (bench/suite-load.ts), and the proxy under test; all share the machine.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_NODE_FLAGS_ON_THIS_NODE, CLI_PATH } from '../test/helpers/gateway-process.js';
import { runLoad } from './load-runner.js';
import {
  cpuMs,
  type LoadJob,
  type LoadResult,
  type LoadTarget,
  MIB,
  median,
  type ProxyKind,
  percentile,
  rssKiB,
  startBareRelay,
  startBenchWorld,
  stopAll,
  writeBenchGatewayConfig,
} from './suite-common.js';
import { startSquid } from './suite-squid.js';

const SIZE = Number(process.env['BENCH_MIB'] ?? 256) * MIB;
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const OPEN = Number(process.env['BENCH_OPEN'] ?? 2000);
const IDLE = Number(process.env['BENCH_IDLE'] ?? 2000);
const CONCURRENCY = 32;
/**
 * policy.decision_cache_ms of the second gateway, measured for HTTP/2 CONNECT latency beside the default
 * (10 s, active because the registry extension is installed): 0 sends every CONNECT to the registry.
 */
const CACHE_MS = 0;
/** BENCH_ONLY=throughput,open,h2open,idle runs a subset (for profiling); the table then has gaps. */
const ONLY = new Set((process.env['BENCH_ONLY'] ?? 'throughput,open,h2open,idle').split(','));
const OUT = process.env['BENCH_OUT'] ?? fileURLToPath(new URL('../docs/BENCHMARKS.md', import.meta.url));
if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];

function log(text: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

interface Proxy {
  readonly kind: ProxyKind;
  readonly pid: number;
  readonly port: number;
}

async function measured(proxy: Proxy, job: LoadJob): Promise<{ r: LoadResult; proxyCpu: number }> {
  const c0 = cpuMs(proxy.pid);
  const r = await runLoad(job);
  return { r, proxyCpu: cpuMs(proxy.pid) - c0 };
}

type Series = number[];
const fmt = (xs: Series, digits = 0): string =>
  xs.length === 0
    ? '–'
    : xs.length === 1
      ? median(xs).toFixed(digits)
      : `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/**
 * The gateway under test, its audit log going to a file, as a deployment's log shipper would take it:
 * parsing every line in this process (which is also the sink) would take CPU from the shared cores.
 * BENCH_PROFILE=<dir> runs it under `node --cpu-prof`; BENCH_NODE_FLAGS adds node flags (e.g. `--trace-gc`);
 * BENCH_GATEWAY_CLI runs another build (A/B). The gateway runs with its launchers' node flags, those this
 * Node accepts (CLI_NODE_FLAGS_ON_THIS_NODE).
 */
async function startBenchGateway(
  config: string,
  logPath: string,
): Promise<{ child: ChildProcess; port: number; stop(): Promise<unknown> }> {
  const dir = process.env['BENCH_PROFILE'];
  const cli = process.env['BENCH_GATEWAY_CLI'] ?? CLI_PATH;
  const out = openSync(logPath, 'w');
  const child = spawn(
    process.execPath,
    [
      ...CLI_NODE_FLAGS_ON_THIS_NODE,
      ...(dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []),
      ...(process.env['BENCH_NODE_FLAGS']?.split(' ').filter(Boolean) ?? []),
      cli,
      'serve',
      '--config',
      config,
    ],
    { stdio: ['ignore', out, 'inherit'] },
  );
  closeSync(out);
  let exited = false;
  const done = new Promise((r) => child.once('exit', r)).then(() => (exited = true));
  let port: number | undefined;
  for (let waited = 0; port === undefined; waited += 50) {
    if (exited || waited > 30_000) throw new Error(`gateway did not start; see ${logPath}`);
    await new Promise((r) => setTimeout(r, 50));
    const m =
      /"msg":"listening".*?"listen_addr":"[^"]*:(\d+)"|"listen_addr":"[^"]*:(\d+)".*?"msg":"listening"/.exec(
        readFileSync(logPath, 'utf8'),
      );
    if (m) port = Number(m[1] ?? m[2]);
  }
  return {
    child,
    port,
    stop() {
      child.kill('SIGTERM');
      return done;
    },
  };
}

/** What the gateway logged last, apart from the per-tunnel lines, for a failed measurement. */
function lastGatewayLines(logPath: string): string[] {
  if (!existsSync(logPath)) return [];
  return readFileSync(logPath, 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.includes('"msg":"CONNECT allowed"') && !l.includes('"msg":"tunnel closed"'))
    .slice(-10);
}

async function main(): Promise<void> {
  const loadBefore = sh('uptime', []);
  log(`start; ${loadBefore}`);
  const { pki, db, sink, agent, authority, config } = await startBenchWorld();
  // BENCH_LOG_DIR keeps the gateway's logs (and e.g. --trace-gc output) after the run.
  const keptLogDir = process.env['BENCH_LOG_DIR'];
  const logDir = keptLogDir ?? mkdtempSync(join(tmpdir(), 'agw-bench-logs-'));
  const gatewayLog = join(logDir, 'gateway.jsonl');
  const gateway = await startBenchGateway(config, gatewayLog);
  // The decision cache off, measured beside the default (HTTP/2 CONNECT latency only).
  const cachedConfig = await writeBenchGatewayConfig(
    pki,
    db.url,
    '[rate_limit]\nmax_tunnels_per_identity = 0',
    `decision_cache_ms = ${CACHE_MS}`,
  );
  const cachedGateway = ONLY.has('h2open')
    ? await startBenchGateway(cachedConfig, join(logDir, 'gateway-cached.jsonl'))
    : undefined;
  const { child: relay, port: relayPort } = await startBareRelay({
    certPath: pki.serverCertPath,
    keyPath: pki.serverKeyPath,
    uploadPort: sink.port,
    downloadPort: sink.port,
  });
  const squid = await startSquid({
    port: await freePort(),
    sinkPort: sink.port,
    certPath: pki.serverCertPath,
    keyPath: pki.serverKeyPath,
    clientCaPath: pki.caCertPath,
  });

  const proxies: Record<ProxyKind, Proxy> = {
    bare: { kind: 'bare', pid: relay.pid!, port: relayPort },
    squid: { kind: 'squid', pid: squid.child.pid!, port: squid.port },
    h1: { kind: 'h1', pid: gateway.child.pid!, port: gateway.port },
    h2: { kind: 'h2', pid: gateway.child.pid!, port: gateway.port },
  };
  const target = (kind: ProxyKind): LoadTarget => ({
    kind,
    port: proxies[kind].port,
    authority,
    caPath: pki.caCertPath,
    certPath: agent.certPath,
    keyPath: agent.keyPath,
  });
  const kinds: ProxyKind[] = ['bare', 'squid', 'h1', 'h2'];
  const s = () => ({}) as Record<ProxyKind, Series>;
  const init = (): Record<ProxyKind, Series> => {
    const o = s();
    for (const k of kinds) o[k] = [];
    return o;
  };
  const up = init();
  const down = init();
  const upCpu = init();
  const downCpu = init();
  const up8 = init();
  const down8 = init();
  const seqP50 = init();
  const seqP99 = init();
  const openP50 = init();
  const openP99 = init();
  const openRate = init();
  const openCpu = init();
  const resP50 = init();
  const resP99 = init();
  const resRate = init();
  const resCpu = init();
  const resumedShare = init();
  const hsRate = init();
  const hsCpu = init();
  const h2p50: Series = [];
  const h2p99: Series = [];
  const h2rate: Series = [];
  const h2rateP50: Series = [];
  const h2rateP99: Series = [];
  const h2cP50: Series = [];
  const h2cP99: Series = [];
  const h2cRate: Series = [];
  const clientCpuShare: Series = [];

  const idleKiB = init();
  try {
    // First, while every proxy is fresh: earlier bulk transfers would leave heaps and buffers whose
    // later trimming hides the cost of the idle tunnels.
    log(`idle tunnels: ${IDLE} per proxy`);
    for (const k of ONLY.has('idle') ? kinds : []) {
      // The gateway serves both protocols: each gets a fresh gateway process of its own, so the
      // memory freed by the other's closed tunnels does not hide its cost.
      const fresh =
        k === 'h1' || k === 'h2'
          ? await startBenchGateway(config, join(logDir, `idle-${k}.jsonl`))
          : undefined;
      const pid = fresh ? fresh.child.pid! : proxies[k].pid;
      const t = fresh ? { ...target(k), port: fresh.port } : target(k);
      try {
        // Warm-up: the first tunnels load code and allocate pools that are not per-tunnel.
        await runLoad({
          op: 'open',
          target: { ...t, kind: k === 'h2' ? 'h1' : k },
          count: 64,
          concurrency: 8,
          resume: false,
        });
        if (k === 'h2') await runLoad({ op: 'h2open', target: t, count: 64, concurrency: 8 });
        await new Promise((r) => setTimeout(r, 1000));
        const before = rssKiB(pid);
        let after = before;
        const r = await runLoad(
          { op: 'idle', target: t, count: IDLE, concurrency: CONCURRENCY },
          async () => {
            await new Promise((res) => setTimeout(res, 1000));
            after = rssKiB(pid);
          },
        );
        idleKiB[k].push((after - before) / (r.done ?? IDLE));
      } finally {
        await fresh?.stop();
      }
      await new Promise((res) => setTimeout(res, 1000)); // let the proxy close them
    }
    for (let run = 0; run < RUNS; run++) {
      log(`run ${run + 1}/${RUNS}: throughput`);
      // Interleaved by proxy within each run, so drift in machine load hits all alike.
      for (const k of ONLY.has('throughput') ? kinds : []) {
        for (const [dir, mbs, cpu] of [
          ['up', up, upCpu],
          ['down', down, downCpu],
        ] as const) {
          const { r, proxyCpu } = await measured(proxies[k], {
            op: 'transfer',
            target: target(k),
            direction: dir,
            bytes: SIZE,
            streams: 1,
          });
          mbs[k].push(SIZE / MIB / r.seconds);
          cpu[k].push(proxyCpu / (SIZE / MIB));
        }
        for (const [dir, mbs] of [
          ['up', up8],
          ['down', down8],
        ] as const) {
          const { r } = await measured(proxies[k], {
            op: 'transfer',
            target: target(k),
            direction: dir,
            bytes: SIZE / 8,
            streams: 8,
          });
          mbs[k].push(SIZE / MIB / r.seconds);
        }
      }
      log(`run ${run + 1}/${RUNS}: new tunnels and handshakes`);
      for (const k of ONLY.has('open') ? (['bare', 'squid', 'h1'] as const) : []) {
        const one = await measured(proxies[k], {
          op: 'open',
          target: target(k),
          count: Math.ceil(OPEN / 4),
          concurrency: 1,
          resume: false,
        });
        seqP50[k].push(percentile(one.r.latencies ?? [], 50));
        seqP99[k].push(percentile(one.r.latencies ?? [], 99));
        for (const resume of [false, true]) {
          const { r, proxyCpu } = await measured(proxies[k], {
            op: 'open',
            target: target(k),
            count: OPEN,
            concurrency: CONCURRENCY,
            resume,
          });
          const lat = r.latencies ?? [];
          (resume ? resP50 : openP50)[k].push(percentile(lat, 50));
          (resume ? resP99 : openP99)[k].push(percentile(lat, 99));
          (resume ? resRate : openRate)[k].push(OPEN / r.seconds);
          (resume ? resCpu : openCpu)[k].push(proxyCpu / OPEN);
          if (resume) resumedShare[k].push((r.resumed ?? 0) / OPEN);
          else clientCpuShare.push(r.clientCpuMs / (r.seconds * 1000));
          if (resume) continue; // a resumed server sends no new ticket: see the resumed-tunnel row instead
          const hs = await measured(proxies[k], {
            op: 'handshake',
            target: target(k),
            count: OPEN,
            concurrency: CONCURRENCY,
            resume: false,
          });
          hsRate[k].push(OPEN / hs.r.seconds);
          hsCpu[k].push(hs.proxyCpu / OPEN);
        }
      }
      log(`run ${run + 1}/${RUNS}: CONNECT on an existing HTTP/2 connection`);
      if (!ONLY.has('h2open')) continue;
      const seq = await runLoad({ op: 'h2open', target: target('h2'), count: OPEN, concurrency: 1 });
      h2p50.push(percentile(seq.latencies ?? [], 50));
      h2p99.push(percentile(seq.latencies ?? [], 99));
      const par = await runLoad({
        op: 'h2open',
        target: target('h2'),
        count: 2 * OPEN,
        concurrency: CONCURRENCY,
      });
      h2rate.push((2 * OPEN) / par.seconds);
      h2rateP50.push(percentile(par.latencies ?? [], 50));
      h2rateP99.push(percentile(par.latencies ?? [], 99));
      if (cachedGateway) {
        const cachedTarget = { ...target('h2'), port: cachedGateway.port };
        const cseq = await runLoad({ op: 'h2open', target: cachedTarget, count: OPEN, concurrency: 1 });
        h2cP50.push(percentile(cseq.latencies ?? [], 50));
        h2cP99.push(percentile(cseq.latencies ?? [], 99));
        const cpar = await runLoad({
          op: 'h2open',
          target: cachedTarget,
          count: 2 * OPEN,
          concurrency: CONCURRENCY,
        });
        h2cRate.push((2 * OPEN) / cpar.seconds);
      }
    }
    const loadAfter = sh('uptime', []);

    // ---- report ----
    const ratio = (a: Series, b: Series): number => median(a) / median(b);
    const r2 = (x: number): string => x.toFixed(2);
    const ok = (cond: boolean): string => (cond ? '**met**' : '**missed**');
    const rows: string[] = [];
    const row = (cells: string[]): void => void rows.push(`| ${cells.join(' | ')} |`);
    row([
      'measurement',
      'bare relay',
      'Squid',
      'gateway HTTP/1.1',
      'gateway HTTP/2',
      'gateway / bare',
      'gateway / Squid',
      'target',
      'status',
    ]);
    row(Array(9).fill('---'));
    /** p50 / p99 of the new-connection proxies (no HTTP/2 column), ratios of the p50. */
    const latencyRow = (name: string, p50: Record<ProxyKind, Series>, p99: Record<ProxyKind, Series>): void =>
      row([
        name,
        ...(['bare', 'squid', 'h1'] as const).map((k) => `${fmt(p50[k], 1)} / ${fmt(p99[k], 1)}`),
        '–',
        r2(ratio(p50.h1, p50.bare)),
        r2(ratio(p50.h1, p50.squid)),
        '–',
        '–',
      ]);
    const upH1Bare = ratio(up.h1, up.bare);
    const upH2Bare = ratio(up.h2, up.bare);
    const upH1Squid = ratio(up.h1, up.squid);
    row([
      `1 tunnel upload, MiB/s`,
      fmt(up.bare),
      fmt(up.squid),
      fmt(up.h1),
      fmt(up.h2),
      `h1 ${r2(upH1Bare)} · h2 ${r2(upH2Bare)}`,
      `h1 ${r2(upH1Squid)} · h2 ${r2(ratio(up.h2, up.squid))}`,
      'h1 ≥ 0.9× bare and ≥ 0.95× Squid; h2 ≥ 0.8× bare',
      ok(upH1Bare >= 0.9 && upH1Squid >= 0.95 && upH2Bare >= 0.8),
    ]);
    const downH1Bare = ratio(down.h1, down.bare);
    const downH2Bare = ratio(down.h2, down.bare);
    row([
      `1 tunnel download, MiB/s`,
      fmt(down.bare),
      fmt(down.squid),
      fmt(down.h1),
      fmt(down.h2),
      `h1 ${r2(downH1Bare)} · h2 ${r2(downH2Bare)}`,
      `h1 ${r2(ratio(down.h1, down.squid))} · h2 ${r2(ratio(down.h2, down.squid))}`,
      'h1 ≥ 0.9× bare; h2 ≥ 0.8× bare',
      ok(downH1Bare >= 0.9 && downH2Bare >= 0.8),
    ]);
    for (const [name, xs] of [
      ['proxy CPU per MiB, upload, ms', upCpu],
      ['proxy CPU per MiB, download, ms', downCpu],
    ] as const) {
      row([
        name,
        fmt(xs.bare, 2),
        fmt(xs.squid, 2),
        fmt(xs.h1, 2),
        fmt(xs.h2, 2),
        `h1 ${r2(ratio(xs.h1, xs.bare))} · h2 ${r2(ratio(xs.h2, xs.bare))}`,
        `h1 ${r2(ratio(xs.h1, xs.squid))} · h2 ${r2(ratio(xs.h2, xs.squid))}`,
        '–',
        '–',
      ]);
    }
    for (const [name, xs] of [
      ['8 tunnels upload, aggregate MiB/s (h2: one connection)', up8],
      ['8 tunnels download, aggregate MiB/s (h2: one connection)', down8],
    ] as const) {
      row([
        name,
        fmt(xs.bare),
        fmt(xs.squid),
        fmt(xs.h1),
        fmt(xs.h2),
        `h1 ${r2(ratio(xs.h1, xs.bare))} · h2 ${r2(ratio(xs.h2, xs.bare))}`,
        `h1 ${r2(ratio(xs.h1, xs.squid))} · h2 ${r2(ratio(xs.h2, xs.squid))}`,
        '–',
        '–',
      ]);
    }
    latencyRow('new TLS connection per tunnel, one at a time: CONNECT→200 p50 / p99, ms', seqP50, seqP99);
    const rateRatio = ratio(openRate.h1, openRate.bare);
    row([
      `new TLS connection per tunnel, ${CONCURRENCY} concurrent: tunnels/s`,
      fmt(openRate.bare),
      fmt(openRate.squid),
      fmt(openRate.h1),
      '–',
      r2(rateRatio),
      r2(ratio(openRate.h1, openRate.squid)),
      '≥ 0.9× bare',
      ok(rateRatio >= 0.9),
    ]);
    latencyRow('… CONNECT→200 p50 / p99, ms', openP50, openP99);
    row([
      '… proxy CPU per tunnel, ms',
      fmt(openCpu.bare, 2),
      fmt(openCpu.squid, 2),
      fmt(openCpu.h1, 2),
      '–',
      r2(ratio(openCpu.h1, openCpu.bare)),
      r2(ratio(openCpu.h1, openCpu.squid)),
      '–',
      '–',
    ]);
    const resumedBeats = median(resRate.h1) > median(openRate.squid);
    row([
      `resumed TLS session per tunnel, ${CONCURRENCY} concurrent: tunnels/s (share resumed)`,
      `${fmt(resRate.bare)} (${r2(median(resumedShare.bare))})`,
      `${fmt(resRate.squid)} (${r2(median(resumedShare.squid))})`,
      `${fmt(resRate.h1)} (${r2(median(resumedShare.h1))})`,
      '–',
      r2(ratio(resRate.h1, resRate.bare)),
      `${r2(ratio(resRate.h1, openRate.squid))} of Squid full`,
      '> Squid full-handshake tunnels/s',
      ok(resumedBeats),
    ]);
    row([
      '… CONNECT→200 p50 / p99, ms; proxy CPU per tunnel, ms',
      `${fmt(resP50.bare, 1)} / ${fmt(resP99.bare, 1)}; ${fmt(resCpu.bare, 2)}`,
      `${fmt(resP50.squid, 1)} / ${fmt(resP99.squid, 1)}; ${fmt(resCpu.squid, 2)}`,
      `${fmt(resP50.h1, 1)} / ${fmt(resP99.h1, 1)}; ${fmt(resCpu.h1, 2)}`,
      '–',
      '–',
      '–',
      '–',
      '–',
    ]);
    const h2p50ok = median(h2p50) <= 1 && median(h2p99) <= 5 && median(h2p50) <= 0.4 * median(seqP50.squid);
    row([
      'CONNECT→200 on an existing HTTP/2 connection, sequential: p50 / p99, ms',
      '–',
      '–',
      '–',
      `${fmt(h2p50, 3)} / ${fmt(h2p99, 3)}`,
      '–',
      `p50 ${r2(median(h2p50) / median(seqP50.squid))} of Squid's one-at-a-time new-tunnel p50`,
      'p50 ≤ 1 ms, p99 ≤ 5 ms, ≤ 0.4× Squid',
      ok(h2p50ok),
    ]);
    row([
      `… ${CONCURRENCY} in flight: CONNECTs/s (p50 / p99, ms)`,
      '–',
      '–',
      '–',
      `${fmt(h2rate)} (${fmt(h2rateP50, 1)} / ${fmt(h2rateP99, 1)})`,
      '–',
      '–',
      '≥ 1,500/s',
      ok(median(h2rate) >= 1500),
    ]);
    row([
      `… cache off, \`policy.decision_cache_ms = ${CACHE_MS}\` (every CONNECT queries the registry): sequential p50 / p99, ms; ${CONCURRENCY} in flight: CONNECTs/s`,
      '–',
      '–',
      '–',
      `${fmt(h2cP50, 3)} / ${fmt(h2cP99, 3)}; ${fmt(h2cRate)}`,
      '–',
      '–',
      'informational (what the default cache saves)',
      '–',
    ]);
    row([
      `full mTLS handshakes/s (until the session ticket), ${CONCURRENCY} concurrent (proxy CPU each, ms)`,
      `${fmt(hsRate.bare)} (${fmt(hsCpu.bare, 2)})`,
      `${fmt(hsRate.squid)} (${fmt(hsCpu.squid, 2)})`,
      `${fmt(hsRate.h1)} (${fmt(hsCpu.h1, 2)})`,
      '–',
      r2(ratio(hsRate.h1, hsRate.bare)),
      r2(ratio(hsRate.h1, hsRate.squid)),
      '–',
      '–',
    ]);
    const idleOk =
      median(idleKiB.h1) <= median(idleKiB.squid) && median(idleKiB.h2) <= 0.5 * median(idleKiB.squid);
    row([
      `RSS per idle tunnel, ${IDLE} open, KiB (h2: ${Math.ceil(IDLE / 200)} connections)`,
      fmt(idleKiB.bare, 1),
      fmt(idleKiB.squid, 1),
      fmt(idleKiB.h1, 1),
      fmt(idleKiB.h2, 1),
      `h1 ${r2(ratio(idleKiB.h1, idleKiB.bare))} · h2 ${r2(ratio(idleKiB.h2, idleKiB.bare))}`,
      `h1 ${r2(ratio(idleKiB.h1, idleKiB.squid))} · h2 ${r2(ratio(idleKiB.h2, idleKiB.squid))}`,
      'h1 ≤ Squid; h2 ≤ 0.5× Squid',
      ok(idleOk),
    ]);

    const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown';
    const section = [
      '<!-- bench:suite:start -->',
      '## Side by side: gateway, bare relay, Squid',
      '',
      `Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Command: \`${process.env['BENCH_COMMAND'] ?? 'npm run bench'}\``,
      `(${SIZE / MIB} MiB per transfer, ${RUNS} runs, ${OPEN} tunnels/handshakes per run, ${IDLE} idle tunnels).`,
      '',
      `- Machine: ${cpus().length} × ${cpuModel}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM. Client, proxy, sink`,
      '  and PostgreSQL share the machine; all traffic is on 127.0.0.1.',
      `- Versions: node ${process.version}, ${squid.version}, ${sh('openssl', ['version'])} (Node's bundled OpenSSL ${process.versions.openssl}).`,
      `- Load: \`${loadBefore}\` before, \`${loadAfter}\` after.`,
      '- Processes: the proxy under test; one load-generator process per measurement (`bench/suite-load.ts`,',
      `  one event loop; median client CPU during new-connection runs ${(median(clientCpuShare) * 100).toFixed(0)}% of a core);`,
      '  the sink in the orchestrator (`bench/suite.ts`). Figures are median (min–max) of the runs, except RSS (one run).',
      '- Bare relay: `bench/bare-relay.ts` (mTLS in, TCP out, no HTTP, no policy); its "CONNECT→200" is TLS +',
      '  first byte until the sink answers. Squid: one worker, `https_port` with `clientca=` (client certificate',
      '  required and verified against the test CA), CONNECT to the sink port only, `cache deny all`, no access log.',
      '  Gateway: default config (TLS session tickets on, 300 s; decision cache 10 s, active because the',
      '  registry extension is installed, so a repeated allow skips the registry SELECT but still checks the',
      '  certificate, key, destination, egress guard and limits), registry in PostgreSQL with a signed',
      '  permission; every audit line is written (to a file, as a log shipper would read it). Node flags of',
      `  the gateway: ${CLI_NODE_FLAGS_ON_THIS_NODE.map((f) => `\`${f}\``).join(' ') || 'none'} (as its launchers run it).`,
      '',
      ...rows,
      '<!-- bench:suite:end -->',
    ].join('\n');
    process.stdout.write(`${section}\n`);
    if (process.env['BENCH_WRITE'] !== '0') {
      const existing = existsSync(OUT) ? readFileSync(OUT, 'utf8') : '# Benchmarks\n';
      const start = existing.indexOf('<!-- bench:suite:start -->');
      const end = existing.indexOf('<!-- bench:suite:end -->');
      const next =
        start >= 0 && end > start
          ? `${existing.slice(0, start)}${section}${existing.slice(end + '<!-- bench:suite:end -->'.length)}`
          : `${existing.trimEnd()}\n\n${section}\n`;
      writeFileSync(OUT, next);
      log(`wrote ${OUT}`);
    }
  } catch (err) {
    for (const l of lastGatewayLines(gatewayLog)) log(`gateway: ${l}`);
    throw err;
  } finally {
    await stopAll([
      () => relay.kill('SIGTERM'),
      () => squid.stop(),
      () => gateway.stop(),
      () => cachedGateway?.stop(),
      () => sink.close(),
      () => db.drop(),
      () => pki.cleanup(),
      () => (keptLogDir ? undefined : rmSync(logDir, { recursive: true, force: true })),
    ]);
  }
}

await main();
