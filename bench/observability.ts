/**
 * What tracing and metrics cost (issue 14): two gateways side by side, one with neither, one exporting
 * every span over OTLP/gRPC to a local receiver and serving /metrics, measured in alternating rounds so
 * that drift in machine load hits both alike.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx bench/observability.ts
 *
 * - CPU per tunnel: the gateway process's CPU (utime + stime) over a batch of short tunnels (CONNECT, 1 KiB
 *   each way, close), on one HTTP/2 connection and with a new TLS connection per tunnel (HTTP/1.1).
 * - CONNECT latency: CONNECT→200 on an existing HTTP/2 connection, sequential.
 * - Per relayed chunk: CPU per MiB relayed through one tunnel (the relay is untouched; this checks it).
 * All traffic is on 127.0.0.1; every loop is bounded in count.
 */
import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import {
  type ClientTls,
  echoOrClose,
  h2Connect,
  h2Session,
  http1Connect,
  readAll,
} from '../test/helpers/clients.js';
import { freshDatabase } from '../test/helpers/db.js';
import {
  type GatewayProcess,
  startGatewayProcess,
  writeGatewayConfig,
} from '../test/helpers/gateway-process.js';
import { startEchoServer, startHashSink, writePattern } from '../test/helpers/loopback-servers.js';
import { startOtlpReceiver } from '../test/helpers/otlp-receiver.js';
import { createTestPki } from '../test/helpers/pki.js';
import { cpuMs, grantBenchAgent, MIB, median, percentile } from './suite-common.js';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const H2_TUNNELS = Number(process.env['BENCH_H2_TUNNELS'] ?? 2000);
const H1_TUNNELS = Number(process.env['BENCH_H1_TUNNELS'] ?? 400);
const CONNECTS = Number(process.env['BENCH_CONNECTS'] ?? 1000);
const RELAY_MIB = Number(process.env['BENCH_RELAY_MIB'] ?? 256);
/** Concurrent tunnels in the CPU-per-tunnel batches. */
const PARALLEL = 8;
const SETTLE_MS = 1000;
const TOKEN = 'b'.repeat(32);
/** What the "on" gateway has: `tracing`, `metrics` or both (the default), to tell their costs apart. */
const ON = new Set((process.env['BENCH_ON'] ?? 'tracing,metrics').split(','));
/** The OTLP transport measured: grpc (the default, as the original gateway sends) or http/protobuf. */
const PROTOCOL = (process.env['BENCH_OTLP_PROTOCOL'] ?? 'grpc') as 'grpc' | 'http/protobuf';

if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];

interface Side {
  readonly name: 'off' | 'on';
  readonly gateway: GatewayProcess;
  readonly results: Record<'h2' | 'h1' | 'relay', number[]> & { latency: number[] };
}

async function main() {
  const pki = await createTestPki();
  const db = await freshDatabase();
  const echo = await startEchoServer();
  const sink = await startHashSink(0);
  const receiver = await startOtlpReceiver(PROTOCOL, { decode: false });
  const agent = await pki.agent('bench-agent');
  const tls: ClientTls = { caPath: pki.caCertPath, agent };
  const echoDest = `127.0.0.1:${echo.port}`;
  const sinkDest = `127.0.0.1:${sink.port}`;
  await grantBenchAgent(db.sql, agent, 'bench-agent', [echoDest, sinkDest]);
  const config = (on: boolean) =>
    writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraServer: 'h2_stream_window_bytes = 1048576\nh2_connection_window_bytes = 16777216',
      extraObservability:
        on && ON.has('tracing')
          ? `otlp_endpoint = "${receiver.endpoint}"\notlp_protocol = "${PROTOCOL}"`
          : '',
      extraTables: on && ON.has('metrics') ? '[admin]\nlisten_addr = "127.0.0.1:0"' : '',
    });
  // Exports every 200 ms, so that their CPU falls inside the measured windows.
  const env = { AGENT_GATEWAY_ADMIN_TOKEN: TOKEN, OTEL_BSP_SCHEDULE_DELAY: '200' };
  const sides: Side[] = [];
  for (const on of [false, true]) {
    const gateway = await startGatewayProcess(await config(on), env);
    sides.push({ name: on ? 'on' : 'off', gateway, results: { h2: [], h1: [], relay: [], latency: [] } });
  }
  /**
   * CPU ms of the gateway per unit of `work`. A pause before lets the exports of earlier work finish
   * (they must not be charged to this work); one after lets this work's exports land inside (at 200 ms
   * per export interval, both are done well within it).
   */
  const measure = async (g: GatewayProcess, units: number, work: () => Promise<void>): Promise<number> => {
    const pid = g.child.pid!;
    await sleep(SETTLE_MS);
    const before = cpuMs(pid);
    await work();
    await sleep(SETTLE_MS);
    return (cpuMs(pid) - before) / units;
  };
  const h2Tunnels = async (g: GatewayProcess) => {
    const session = await h2Session(g.port, tls);
    const one = async () => {
      const { status, stream } = await h2Connect(session, echoDest);
      if (status !== 200) throw new Error(`CONNECT ${status}`);
      const reply = readAll(stream);
      stream.end(Buffer.alloc(1024, 1));
      if ((await reply).length !== 1024) throw new Error('short echo');
    };
    await inBatches(H2_TUNNELS, one);
    session.close();
  };
  const h1Tunnels = async (g: GatewayProcess) => {
    await inBatches(H1_TUNNELS, async () => {
      const status = await echoOrClose(await http1Connect(g.port, tls, echoDest), Buffer.alloc(1024, 2));
      if (status !== 200) throw new Error(`CONNECT ${status}`);
    });
  };
  const relay = async (g: GatewayProcess) => {
    const session = await h2Session(g.port, tls);
    const { status, stream } = await h2Connect(session, sinkDest);
    if (status !== 200) throw new Error(`CONNECT ${status}`);
    await upload(stream, RELAY_MIB * MIB);
    session.close();
  };
  const latency = async (g: GatewayProcess): Promise<number[]> => {
    const session = await h2Session(g.port, tls);
    const out: number[] = [];
    for (let i = 0; i < CONNECTS; i++) {
      const t0 = process.hrtime.bigint();
      const r = await h2Connect(session, sinkDest);
      out.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (r.status !== 200) throw new Error(`CONNECT ${r.status}`);
      // Ended, not reset: nghttp2's rapid-reset guard answers ~1000 client resets on one connection with
      // GOAWAY (a client that cancels streams that fast is treated as an attack).
      await upload(r.stream, 0);
    }
    session.close();
    return out;
  };

  const load: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    load.push(loadAverage());
    // Alternate which side goes first, round by round.
    const order = round % 2 === 0 ? sides : [...sides].reverse();
    for (const side of order) {
      const g = side.gateway;
      side.results.relay.push(await measure(g, RELAY_MIB, () => relay(g)));
      side.results.h2.push(await measure(g, H2_TUNNELS, () => h2Tunnels(g)));
      side.results.h1.push(await measure(g, H1_TUNNELS, () => h1Tunnels(g)));
      side.results.latency.push(...(await latency(g)));
    }
  }
  let spans = '';
  if (ON.has('metrics')) {
    const line = await sides[1]!.gateway.waitForLog((l) => l.msg === 'admin listening', 'admin listening');
    const text = await (
      await fetch(`http://${String(line['admin_addr'])}/metrics`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      })
    ).text();
    const count = (o: string) =>
      new RegExp(`agent_gateway_trace_spans_total\\{outcome="${o}"\\} (\\S+)`).exec(text)?.[1];
    spans = `spans exported ${count('exported')}, dropped ${count('dropped')}; `;
  }
  const row = (what: string, pick: (s: Side) => number[], unit: string, digits = 3) => {
    const [off, onSide] = sides.map(pick) as [number[], number[]];
    const m = (xs: number[]) => median(xs);
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
    const delta = ((m(onSide) / m(off) - 1) * 100).toFixed(1);
    console.log(
      `| ${what} | ${m(off).toFixed(digits)} (${spread(off)}) | ${m(onSide).toFixed(digits)} (${spread(onSide)}) | ${delta}% | ${unit} |`,
    );
  };
  console.log(`\nload average at the start of each round: ${load.join('; ')}`);
  console.log(`${ROUNDS} rounds, alternating; median (min–max of the rounds)`);
  console.log('| measure | tracing and metrics off | on | on vs off | unit |');
  console.log('| --- | --- | --- | --- | --- |');
  row(`CPU per HTTP/2 tunnel (${H2_TUNNELS} per round, ${PARALLEL} at a time)`, (s) => s.results.h2, 'ms');
  row(`CPU per HTTP/1.1 tunnel with its TLS handshake (${H1_TUNNELS} per round)`, (s) => s.results.h1, 'ms');
  row(`CPU per MiB relayed (one tunnel, ${RELAY_MIB} MiB per round)`, (s) => s.results.relay, 'ms');
  const lat = (p: number) => (s: Side) => [percentile(s.results.latency, p)];
  row(`CONNECT→200 p50 (${CONNECTS * ROUNDS} sequential)`, lat(50), 'ms');
  row(`CONNECT→200 p99 (${CONNECTS * ROUNDS} sequential)`, lat(99), 'ms');
  console.log(
    `\n"on" has ${[...ON].join(' and ')} (OTLP ${PROTOCOL}). ${spans}${receiver.requests.length} exports (${(receiver.bytes() / MIB).toFixed(1)} MiB) received`,
  );

  for (const side of sides) await side.gateway.stop();
  await receiver.close();
  await echo.close();
  await sink.close();
  await db.drop();
  await pki.cleanup();
}

/** Runs `one` `count` times, PARALLEL at a time. */
async function inBatches(count: number, one: () => Promise<void>): Promise<void> {
  let started = 0;
  const worker = async () => {
    while (started < count) {
      started++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
}

function upload(stream: Duplex, total: number): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.once('close', () => resolve());
    stream.resume();
    writePattern(stream, total, () => stream.end());
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

await main();
