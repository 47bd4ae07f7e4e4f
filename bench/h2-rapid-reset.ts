/**
 * HTTP/2 rapid reset (CVE-2023-44487) against the gateway: how much one attacking client slows a
 * legitimate client's CONNECTs, for each HTTP/2 reset-limit setting given.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx bench/h2-rapid-reset.ts
 *
 * One gateway process per setting (the CLI from dist/, so `npm run build` first). Per round and setting:
 * the legitimate client makes RR_CONNECTS sequential CONNECTs on one HTTP/2 connection (CONNECT→200 timed,
 * the tunnel then ended gracefully, without RST_STREAM), first alone, then while the attacker
 * (bench/h2-rapid-reset-attacker.ts, its own process) opens and resets streams on its own connection,
 * reconnecting after each GOAWAY. The attacker's certificate carries an identity without any permission,
 * as any certificate can (the gateway trusts no CA). Settings alternate round by round (A B A B), so
 * drift in the machine's load hits them alike.
 *
 * Knobs: RR_ROUNDS (2), RR_CONNECTS (300), RR_ATTACK_S (upper bound of one attack, 60),
 * RR_MAX_RESETS (per attack, 5,000,000), RR_SETTINGS (semicolon-separated `burst/rate` pairs, default
 * "1000/33;100/10"), BENCH_GATEWAY_CLI (another build's dist/cli/main.js, to A/B a change). All traffic
 * is on 127.0.0.1; every loop is bounded.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type ClientTls, h2Connect, h2Session } from '../test/helpers/clients.js';
import { freshDatabase } from '../test/helpers/db.js';
import {
  CLI_NODE_FLAGS_ON_THIS_NODE,
  CLI_PATH,
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../test/helpers/gateway-process.js';
import { startEchoServer } from '../test/helpers/loopback-servers.js';
import { createTestPki, type TestAgent, type TestPki } from '../test/helpers/pki.js';
import { cpuMs, grantBenchAgent, percentile, stopAll } from './suite-common.js';

if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];

const ROUNDS = Number(process.env['RR_ROUNDS'] ?? 2);
const CONNECTS = Number(process.env['RR_CONNECTS'] ?? 300);
const ATTACK_S = Number(process.env['RR_ATTACK_S'] ?? 60);
const MAX_RESETS = Number(process.env['RR_MAX_RESETS'] ?? 5_000_000);
const SETTINGS = (process.env['RR_SETTINGS'] ?? '1000/33;100/10').split(';').map((pair) => {
  const [burst, rate] = pair.split('/').map(Number);
  if (!Number.isInteger(burst) || !Number.isInteger(rate)) throw new Error(`RR_SETTINGS: bad pair ${pair}`);
  return { burst: burst!, rate: rate! };
});
const ATTACKER = fileURLToPath(new URL('./h2-rapid-reset-attacker.ts', import.meta.url));
// Run under Node 20 (`AGENT_GATEWAY_ALLOW_UNSUPPORTED_NODE=1 /usr/bin/node --import tsx …`) for the
// before/after figures: Node 20 has no --disable-sigusr1 and ignores the reset settings (1000/33 fixed).
// BENCH_GATEWAY_CLI=<another build's dist/cli/main.js>: A/B a change (as in bench/suite.ts).
const CLI_FILE = process.env['BENCH_GATEWAY_CLI'] ?? CLI_PATH;
const CLI = [...CLI_NODE_FLAGS_ON_THIS_NODE, CLI_FILE];

interface Phase {
  readonly p50: number;
  readonly p99: number;
  /** Gateway CPU over the phase, in % of one core. */
  readonly gatewayCpu: number;
  readonly seconds: number;
  readonly attacker?: { resets: number; connections: number; goaways: number };
}

/** RR_CONNECTS sequential CONNECT→200 on one HTTP/2 connection; each tunnel ended with END_STREAM. */
async function legitimateConnects(gateway: GatewayProcess, tls: ClientTls, destination: string) {
  const session = await h2Session(gateway.port, tls);
  const latencies: number[] = [];
  try {
    for (let i = 0; i < CONNECTS; i++) {
      const t0 = process.hrtime.bigint();
      const { status, stream } = await h2Connect(session, destination);
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (status !== 200) throw new Error(`legitimate CONNECT answered ${status}`);
      // A graceful end both ways (no RST_STREAM, which the reset limit would count against this client).
      await new Promise<void>((resolve) => {
        stream.once('close', resolve);
        stream.resume();
        stream.end();
      });
    }
  } finally {
    session.close();
  }
  return latencies;
}

function startAttacker(gateway: GatewayProcess, pki: TestPki, attacker: TestAgent, destination: string) {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      ATTACKER,
      String(gateway.port),
      pki.caCertPath,
      attacker.certPath,
      attacker.keyPath,
      destination,
      String(ATTACK_S),
      String(MAX_RESETS),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk;
  });
  const result = new Promise<Phase['attacker']>((resolve) => {
    child.once('close', () => resolve(JSON.parse(out.trim() || '{}') as Phase['attacker']));
  });
  return { child, result };
}

async function phase(
  gateway: GatewayProcess,
  tls: ClientTls,
  destination: string,
  attack?: () => ReturnType<typeof startAttacker>,
): Promise<Phase> {
  const running = attack?.();
  // Let the attack reach its steady state (first GOAWAYs, reconnects) before measuring.
  if (running) await new Promise((resolve) => setTimeout(resolve, 1000));
  const cpu0 = cpuMs(gateway.child.pid!);
  const t0 = process.hrtime.bigint();
  const latencies = await legitimateConnects(gateway, tls, destination);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuMs(gateway.child.pid!) - cpu0;
  running?.child.kill('SIGTERM');
  const attacker = await running?.result;
  return {
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    gatewayCpu: (cpu / 10 / seconds) | 0,
    seconds,
    ...(attacker ? { attacker } : {}),
  };
}

/**
 * The gateway's refusal lines by kind, counting those the per-source log limit folded into
 * `denies suppressed` lines: which step each attacking stream reached.
 */
function refusals(logs: readonly LogLine[]): Record<string, number> {
  const counts: Record<string, number> = {};
  const add = (kind: string, n: number) => {
    counts[kind] = (counts[kind] ?? 0) + n;
  };
  for (const line of logs) {
    if (line.msg === 'denies suppressed') {
      for (const [kind, n] of Object.entries(line['suppressed_by_kind'] as Record<string, number>))
        add(kind, n);
    } else if (line.msg !== 'CONNECT allowed' && line.msg !== 'tunnel closed') {
      add(line['deny_reason'] === undefined ? line.msg : `${line.msg}/${String(line['deny_reason'])}`, 1);
    }
  }
  return counts;
}

async function main(): Promise<void> {
  const pki = await createTestPki();
  const db = await freshDatabase();
  const echo = await startEchoServer();
  const destination = `127.0.0.1:${echo.port}`;
  const agent = await pki.agent('bench-agent');
  const attacker = await pki.agent('bench-attacker');
  await grantBenchAgent(db.sql, agent, 'bench-agent', [destination]);
  const tls: ClientTls = { caPath: pki.caCertPath, agent };
  const rows: string[] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const { burst, rate } of SETTINGS) {
        const config = await writeGatewayConfig({
          dir: pki.dir,
          databaseUrl: db.url,
          certPath: pki.serverCertPath,
          keyPath: pki.serverKeyPath,
          extraServer: `h2_reset_burst = ${burst}\nh2_reset_rate_per_s = ${rate}`,
        });
        const gateway = await startGatewayProcess(config, {}, CLI);
        let mark = 0;
        try {
          const quiet = await phase(gateway, tls, destination);
          mark = gateway.logs.length;
          const loud = await phase(gateway, tls, destination, () =>
            startAttacker(gateway, pki, attacker, destination),
          );
          const a = loud.attacker;
          rows.push(
            `| ${round + 1} | ${burst}/${rate} | ${quiet.p50.toFixed(1)} / ${quiet.p99.toFixed(1)} | ${quiet.gatewayCpu}% | ` +
              `${loud.p50.toFixed(1)} / ${loud.p99.toFixed(1)} | ${loud.gatewayCpu}% | ` +
              `${a ? Math.round(a.resets / (loud.seconds + 1)) : '?'} | ${a ? Math.round(a.connections / (loud.seconds + 1)) : '?'} |`,
          );
          process.stderr.write(`${rows[rows.length - 1]}\n`);
        } catch (error) {
          throw new Error(`${(error as Error).message}; gateway stderr: ${gateway.stderr().slice(-2000)}`);
        } finally {
          await gateway.stop();
          process.stderr.write(
            `  what the attacker's streams became: ${JSON.stringify(refusals(gateway.logs.slice(mark)))}\n`,
          );
        }
      }
    }
  } finally {
    await stopAll([() => echo.close(), () => db.drop(), () => pki.cleanup()]);
  }
  console.log(
    `\nHTTP/2 rapid reset on Node ${process.versions.node}: ${CONNECTS} sequential CONNECT→200 of a legitimate client, alone and beside one attacker`,
  );
  console.log(
    '| round | h2_reset_burst/rate | alone p50 / p99 ms | gateway CPU | attacked p50 / p99 ms | gateway CPU | attacker resets/s | attacker connections/s |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const row of rows) console.log(row);
}

await main();
