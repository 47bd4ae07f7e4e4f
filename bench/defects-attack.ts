/**
 * The attacks of issue 10, items 2-4, measured the same way against any build of the CLI, for the before
 * and after figures: `BENCH_GATEWAY_CLI=/path/to/dist/cli/main.js node --import tsx bench/defects-attack.ts`
 * (default: this checkout's build). The sidecar runs from the same CLI. `--only NAME` runs one attack.
 *
 * - sidecar: 20 requests (10 CONNECT, 10 absolute-form GET) to the sidecar whose client leaves at once
 *   (write, then close, as `printf … | socat -t0` does); then the tunnels and upstream connections left.
 * - held: 200 connections whose certificate has no identity send one CONNECT (403) and then only PINGs,
 *   and 200 with an identity send one GET (405) and then only PINGs; how many the gateway still holds
 *   request_timeout_ms + 3 s later.
 * - reset: 20 connections each send a rapid-reset burst (3,000 streams opened and reset), with and without
 *   identity, then keep their side open; the sockets the gateway holds 3 s later.
 * - logflood: a 20,000-character identity in a self-signed certificate plus a rapid-reset loop for 5 s;
 *   the bytes the gateway writes to stdout per second.
 *
 * Only loopback; every loop is bounded in count and time. Needs PostgreSQL (TEST_DATABASE_URL, or an
 * embedded server is started as for the tests).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { CLI_NODE_FLAGS } from '../test/helpers/gateway-process.js';
import { type GrantedRegistry, grantedRegistry } from '../test/helpers/granted-registry.js';
import { connectHeaders, getHeaders, type RawH2Client, rawH2Connect } from '../test/helpers/h2-frames.js';
import { startCountingServer } from '../test/helpers/loopback-servers.js';
import type { TestAgent } from '../test/helpers/pki.js';
import { processSockets } from '../test/helpers/proc-sockets.js';

const CLI =
  process.env['BENCH_GATEWAY_CLI'] ?? fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const only = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : undefined;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The CLI as a child process: stdout bytes counted, JSON lines kept unless told not to. */
interface Cli {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: Array<Record<string, unknown>>;
  stdoutBytes: number;
  untilLine(
    test: (line: Record<string, unknown>) => boolean,
    boundMs: number,
  ): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

async function startCli(args: string[], keepLines = true): Promise<Cli> {
  const child = spawn(process.execPath, [...CLI_NODE_FLAGS, CLI, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const cli: Cli = {
    child,
    pid: child.pid ?? 0,
    lines: [],
    stdoutBytes: 0,
    async untilLine(test, boundMs) {
      const deadline = Date.now() + boundMs;
      for (;;) {
        const found = cli.lines.find(test);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no such line from ${args[0]} within ${boundMs} ms`);
        await sleep(10);
      }
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const closed = once(child, 'close');
      child.kill('SIGTERM');
      await Promise.race([closed, sleep(10_000).then(() => child.kill('SIGKILL'))]);
    },
  };
  let pending = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    cli.stdoutBytes += chunk.length;
    // The first lines (listening) are always kept; a flood only counts bytes.
    if (!keepLines && cli.lines.length > 0) return;
    pending += chunk.toString('utf8');
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const text = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
      if (text.trim() !== '') cli.lines.push(JSON.parse(text) as Record<string, unknown>);
    }
  });
  await cli.untilLine((l) => l['msg'] === 'listening', 20_000);
  return cli;
}

function portOf(cli: Cli): number {
  const line = cli.lines.find((l) => l['msg'] === 'listening');
  return Number(String(line?.['listen_addr']).split(':').pop());
}

async function gateway(registry: GrantedRegistry, extraServer: string, keepLines = true) {
  const cli = await startCli(['serve', '--config', await registry.config({ extraServer })], keepLines);
  return { cli, port: portOf(cli) };
}

const count = (cli: Cli, msg: string) => cli.lines.filter((l) => l['msg'] === msg).length;

async function sidecarAttack(): Promise<Record<string, number>> {
  const dest = await startCountingServer();
  const registry = await grantedRegistry([dest.port]);
  const gw = await gateway(registry, '');
  const sidecar = await startCli([
    'sidecar',
    ...['--gateway', `127.0.0.1:${gw.port}`, '--gateway-ca', registry.pki.caCertPath],
    ...['--gateway-server-name', 'localhost', '--listen', '127.0.0.1:0'],
    ...['--cert', registry.alpha.certPath, '--key', registry.alpha.keyPath],
  ]);
  const sidecarPort = portOf(sidecar);
  const authority = `127.0.0.1:${dest.port}`;
  try {
    for (let i = 0; i < 20; i++) {
      const head =
        i % 2 === 0
          ? `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`
          : `GET http://${authority}/ HTTP/1.1\r\nHost: ${authority}\r\n\r\n`;
      const socket = connect(sidecarPort, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      socket.write(head);
      socket.destroy();
      await sleep(50);
    }
    await sleep(3000);
    return {
      departed_requests: 20,
      gateway_tunnels_open: count(gw.cli, 'CONNECT allowed') - count(gw.cli, 'tunnel closed'),
      gateway_upstream_sockets: processSockets(gw.cli.pid, { remotePort: dest.port }),
      destination_connections_open: dest.open,
    };
  } finally {
    await sidecar.stop();
    await gw.cli.stop();
    await dest.close();
    await registry.cleanup();
  }
}

/** Opens `n` raw HTTP/2 connections 20 at a time (the handshakes are the cost); `first` runs on each. */
async function openMany(
  port: number,
  caPath: string,
  agent: TestAgent,
  n: number,
  first: (client: RawH2Client) => void = () => {},
): Promise<RawH2Client[]> {
  const clients: RawH2Client[] = [];
  for (let i = 0; i < n; i += 20) {
    const batch = Array.from({ length: Math.min(20, n - i) }, () =>
      rawH2Connect(port, { caPath, agent }).then((client) => {
        first(client);
        return client;
      }),
    );
    clients.push(...(await Promise.all(batch)));
  }
  return clients;
}

async function heldAttack(): Promise<Record<string, number>> {
  const REQUEST_TIMEOUT_MS = 1000;
  const N = 200;
  const echo = await startCountingServer();
  const registry = await grantedRegistry([echo.port]);
  const noIdentity = await registry.pki.agentWithoutExtension();
  const gw = await gateway(registry, `request_timeout_ms = ${REQUEST_TIMEOUT_MS}`);
  const caPath = registry.pki.caCertPath;
  const clients: RawH2Client[] = [];
  try {
    // Each sends its one refused request as soon as it is connected.
    const without = await openMany(gw.port, caPath, noIdentity, N, (c) =>
      c.headers(1, connectHeaders(`127.0.0.1:${echo.port}`)),
    );
    const withIdentity = await openMany(gw.port, caPath, registry.alpha, N, (c) =>
      c.headers(1, getHeaders(`127.0.0.1:${echo.port}`)),
    );
    clients.push(...without, ...withIdentity);
    const pinger = setInterval(() => {
      for (const c of clients) c.ping();
    }, 100);
    const open = { without: N, with: N };
    for (const c of without) void c.closed.then(() => open.without--);
    for (const c of withIdentity) void c.closed.then(() => open.with--);
    await sleep(REQUEST_TIMEOUT_MS + 3000);
    clearInterval(pinger);
    return {
      connections_per_kind: N,
      request_timeout_ms: REQUEST_TIMEOUT_MS,
      open_without_identity_after_403_and_pings: open.without,
      open_with_identity_after_405_and_pings: open.with,
      gateway_client_sockets: processSockets(gw.cli.pid, { localPort: gw.port }),
    };
  } finally {
    for (const c of clients) c.destroy();
    await gw.cli.stop();
    await echo.close();
    await registry.cleanup();
  }
}

async function burst(client: RawH2Client, headers: Array<[string, string]>, streams: number): Promise<void> {
  for (let id = 1; id < 2 * streams && !client.socket.destroyed; ) {
    const frames: Buffer[] = [];
    for (let i = 0; i < 100 && id < 2 * streams; i++, id += 2) {
      frames.push(client.frames.headers(id, headers), client.frames.rst(id));
    }
    client.burst(frames);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function resetAttack(): Promise<Record<string, number>> {
  const CONNECTIONS = 20;
  const echo = await startCountingServer();
  const registry = await grantedRegistry([echo.port]);
  const noIdentity = await registry.pki.agentWithoutExtension();
  const gw = await gateway(registry, 'request_timeout_ms = 60000');
  const caPath = registry.pki.caCertPath;
  const result: Record<string, number> = { connections_per_kind: CONNECTIONS, streams_per_connection: 3000 };
  try {
    const fdsBefore = readdirSync(`/proc/${gw.cli.pid}/fd`).length;
    const kinds: Array<[string, TestAgent, Array<[string, string]>]> = [
      ['with_identity', registry.alpha, connectHeaders(`127.0.0.1:${echo.port}`)],
      ['without_identity', noIdentity, getHeaders(`127.0.0.1:${echo.port}`)],
    ];
    for (const [kind, agent, headers] of kinds) {
      const clients = await openMany(gw.port, caPath, agent, CONNECTIONS);
      for (const c of clients) await burst(c, headers, 3000);
      const pinger = setInterval(() => {
        for (const c of clients) c.ping();
      }, 100);
      await sleep(3000);
      clearInterval(pinger);
      result[`gateway_client_sockets_${kind}`] = processSockets(gw.cli.pid, { localPort: gw.port });
      result[`gateway_fds_added_${kind}`] = readdirSync(`/proc/${gw.cli.pid}/fd`).length - fdsBefore;
      for (const c of clients) c.destroy();
      await sleep(500);
    }
    return result;
  } finally {
    await gw.cli.stop();
    await echo.close();
    await registry.cleanup();
  }
}

async function logFloodAttack(): Promise<Record<string, number>> {
  const SECONDS = 5;
  const registry = await grantedRegistry([]);
  const long = await registry.pki.agent(`agent-${'x'.repeat(20_000)}`);
  const gw = await gateway(registry, '', false);
  const caPath = registry.pki.caCertPath;
  const from = gw.cli.stdoutBytes;
  const start = Date.now();
  let connections = 0;
  try {
    while (Date.now() - start < SECONDS * 1000 && connections < 500) {
      const client = await rawH2Connect(gw.port, { caPath, agent: long });
      connections++;
      await burst(client, connectHeaders('127.0.0.1:9'), 1000);
      await Promise.race([client.closed, sleep(100)]);
      client.destroy();
    }
    const elapsedS = (Date.now() - start) / 1000;
    await sleep(500); // the lines of the last burst
    const bytes = gw.cli.stdoutBytes - from;
    return {
      seconds: Math.round(elapsedS * 10) / 10,
      connections,
      log_bytes: bytes,
      log_bytes_per_second: Math.round(bytes / elapsedS),
    };
  } finally {
    await gw.cli.stop();
    await registry.cleanup();
  }
}

const attacks: Record<string, () => Promise<Record<string, number>>> = {
  sidecar: sidecarAttack,
  held: heldAttack,
  reset: resetAttack,
  logflood: logFloodAttack,
};

process.stdout.write(`CLI under test: ${CLI}\n`);
for (const [name, run] of Object.entries(attacks)) {
  if (only !== undefined && only !== name) continue;
  const figures = await run();
  process.stdout.write(`${name}: ${JSON.stringify(figures)}\n`);
}
process.exit(0);
