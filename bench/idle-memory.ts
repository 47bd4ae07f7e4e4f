/**
 * Where an idle HTTP/1.1 tunnel's memory goes (issue 11: idle memory at or below Squid's). Opens
 * BENCH_IDLE tunnels (2,000) through a fresh gateway, holds them, and reads per tunnel: the growth of the
 * process's RSS, and of V8's heap (used and reserved) and of external memory, each before and after a full
 * collection. Run with the launchers' node flags and without them, alternating, BENCH_RUNS times each.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx bench/idle-memory.ts
 *
 * The gateway is the real CLI; the readings come through its inspector (Chrome DevTools Protocol over
 * WebSocket, on 127.0.0.1 with a random port), which is why this is a benchmark and never a test. Needs a
 * build (dist/cli/main.js). Without BENCH_DATABASE_URL an embedded PostgreSQL is started.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI_NODE_FLAGS, CLI_PATH } from '../test/helpers/gateway-process.js';
import { runLoad } from './load-runner.js';
import { median, rssKiB, startBenchWorld } from './suite-common.js';

if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];
const IDLE = Number(process.env['BENCH_IDLE'] ?? 2000);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 2);

interface Memory {
  readonly rssKiB: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
}

/** A minimal DevTools Protocol client: one request at a time is all this needs. */
class Inspector {
  private id = 0;
  private readonly waiting = new Map<number, (result: unknown) => void>();
  private constructor(private readonly ws: WebSocket) {
    ws.addEventListener('message', (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown };
      if (message.id !== undefined) this.waiting.get(message.id)?.(message.result);
    });
  }

  static async open(port: number): Promise<Inspector> {
    const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{
      webSocketDebuggerUrl: string;
    }>;
    const url = targets[0]?.webSocketDebuggerUrl;
    if (url === undefined) throw new Error('the gateway lists no inspector target');
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.addEventListener('open', resolve, { once: true });
      ws.addEventListener('error', reject, { once: true });
    });
    return new Inspector(ws);
  }

  call(method: string, params: object = {}): Promise<unknown> {
    const id = ++this.id;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  async memory(pid: number): Promise<Memory> {
    const result = (await this.call('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    })) as { result: { value: string } };
    const m = JSON.parse(result.result.value) as Omit<Memory, 'rssKiB'>;
    return { rssKiB: rssKiB(pid), heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
  }

  close(): void {
    this.ws.close();
  }
}

async function startGateway(config: string, flags: readonly string[], logPath: string) {
  const out = openSync(logPath, 'w');
  // Port 0: the inspector picks a free port and says which on stderr.
  const child: ChildProcess = spawn(
    process.execPath,
    [...flags, '--inspect=127.0.0.1:0', CLI_PATH, 'serve', '--config', config],
    { stdio: ['ignore', out, 'pipe'] },
  );
  closeSync(out);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  for (let waited = 0; ; waited += 100) {
    if (waited > 30_000) throw new Error(`gateway did not start; see ${logPath}`);
    await new Promise((r) => setTimeout(r, 100));
    const listening = /"listen_addr":"[^"]*:(\d+)".*?"msg":"listening"/.exec(readFileSync(logPath, 'utf8'));
    const inspector = /ws:\/\/127\.0\.0\.1:(\d+)\//.exec(stderr);
    if (listening && inspector)
      return { child, port: Number(listening[1]), inspectorPort: Number(inspector[1]) };
  }
}

async function main(): Promise<void> {
  const { pki, db, sink, agent, authority, config } = await startBenchWorld();
  const cases = [
    { label: `launchers' flags (${CLI_NODE_FLAGS.join(' ')})`, flags: CLI_NODE_FLAGS },
    { label: 'no node flags', flags: [] as readonly string[] },
  ];
  const perTunnel = new Map<string, Record<string, number[]>>();
  try {
    for (let run = 0; run < RUNS; run++) {
      for (const c of cases) {
        const gateway = await startGateway(config, c.flags, join(pki.dir, 'idle-memory-gateway.jsonl'));
        const inspector = await Inspector.open(gateway.inspectorPort);
        try {
          const target = {
            kind: 'h1' as const,
            port: gateway.port,
            authority,
            caPath: pki.caCertPath,
            certPath: agent.certPath,
            keyPath: agent.keyPath,
          };
          // As the suite: a warm-up loads code and pools that are not per tunnel.
          await runLoad({ op: 'open', target, count: 64, concurrency: 8, resume: false });
          await new Promise((r) => setTimeout(r, 1000));
          const before = await inspector.memory(gateway.child.pid!);
          await inspector.call('HeapProfiler.collectGarbage');
          const beforeGc = await inspector.memory(gateway.child.pid!);
          let held = { before, beforeGc, after: before, afterGc: before };
          const r = await runLoad({ op: 'idle', target, count: IDLE, concurrency: 32 }, async () => {
            await new Promise((res) => setTimeout(res, 1000));
            const after = await inspector.memory(gateway.child.pid!);
            await inspector.call('HeapProfiler.collectGarbage');
            held = { ...held, after, afterGc: await inspector.memory(gateway.child.pid!) };
          });
          const n = r.done ?? IDLE;
          const series = perTunnel.get(c.label) ?? {};
          const add = (name: string, value: number) => {
            series[name] = [...(series[name] ?? []), value];
          };
          add('rss', (held.after.rssKiB - held.before.rssKiB) / n);
          add('rss after gc', (held.afterGc.rssKiB - held.beforeGc.rssKiB) / n);
          for (const k of ['heapUsed', 'heapTotal', 'external'] as const) {
            add(k, (held.after[k] - held.before[k]) / 1024 / n);
            add(`${k} after gc`, (held.afterGc[k] - held.beforeGc[k]) / 1024 / n);
          }
          perTunnel.set(c.label, series);
        } finally {
          inspector.close();
          gateway.child.kill('SIGTERM');
          await new Promise((r) => gateway.child.once('exit', r));
        }
      }
    }
  } finally {
    await sink.close();
    await db.drop();
    await pki.cleanup();
  }
  const columns = [
    'rss',
    'rss after gc',
    'heapUsed',
    'heapUsed after gc',
    'heapTotal',
    'heapTotal after gc',
    'external',
  ];
  console.log(`\nPer idle HTTP/1.1 tunnel, ${IDLE} open, KiB; median of ${RUNS} runs (min–max)`);
  console.log(`| node flags | ${columns.join(' | ')} |`);
  console.log(`| --- |${columns.map(() => ' --- |').join('')}`);
  for (const [label, series] of perTunnel) {
    const cell = (xs: number[] = []) =>
      `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})`;
    console.log(`| ${label} | ${columns.map((k) => cell(series[k])).join(' | ')} |`);
  }
}

await main();
