import { CLI_NODE_FLAGS, CLI_PATH, startGatewayProcess } from '../test/helpers/gateway-process.js';
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

/** The real CLI under `flags`, with its inspector on a free loopback port (printed on stderr at start). */
async function startGateway(config: string, flags: readonly string[]) {
  const gateway = await startGatewayProcess(config, {}, [...flags, '--inspect=127.0.0.1:0', CLI_PATH]);
  const inspector = /ws:\/\/127\.0\.0\.1:(\d+)\//.exec(gateway.stderr());
  if (inspector === null) throw new Error(`the gateway printed no inspector address: ${gateway.stderr()}`);
  return { gateway, inspectorPort: Number(inspector[1]) };
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
        const { gateway, inspectorPort } = await startGateway(config, c.flags);
        const inspector = await Inspector.open(inspectorPort);
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
          await gateway.stop();
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
