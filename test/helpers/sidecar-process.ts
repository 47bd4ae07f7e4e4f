import { type ChildProcess, spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { CLI_ARGV, type LogLine } from './gateway-process.js';

/**
 * `agent-gateway sidecar` as a child process (the built CLI), with its JSON log lines collected.
 */
export interface SidecarProcess {
  readonly child: ChildProcess;
  /** The local proxy's TCP port (0 when it listens on a Unix socket only). */
  readonly port: number;
  readonly logs: LogLine[];
  stderr(): string;
  waitForLog(predicate: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

export interface SidecarRun {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  stderr(): string;
  readonly exited: Promise<number | null>;
  waitForLog(predicate: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
}

/** Spawns the sidecar and collects its output; does not wait for anything. `cli`: as in startGatewayProcess. */
export function spawnSidecar(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  cli: readonly string[] = CLI_ARGV,
): SidecarRun {
  const child = spawn(process.execPath, [...cli, 'sidecar', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const logs: LogLine[] = [];
  const watchers = new Set<{ test: (l: LogLine) => boolean; found: (l: LogLine) => void }>();
  let errText = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const raw of lines.filter((l) => l.trim() !== '')) {
      const line = JSON.parse(raw) as LogLine;
      logs.push(line);
      for (const w of [...watchers]) {
        if (!w.test(line)) continue;
        watchers.delete(w);
        w.found(line);
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    errText += text;
  });
  // 'close', not 'exit': it comes after stdout/stderr are fully read, so no log line is missed.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
    child,
    logs,
    stderr: () => errText,
    exited,
    waitForLog(test, what = 'log line') {
      const earlier = logs.find(test);
      if (earlier !== undefined) return Promise.resolve(earlier);
      return new Promise((found, fail) => {
        watchers.add({ test, found });
        void exited.then((code) =>
          fail(new Error(`sidecar exited (${code}) before ${what}; stderr: ${errText}`)),
        );
      });
    },
  };
}

/** Spawns the sidecar and waits until it listens. */
export async function startSidecarProcess(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  cli: readonly string[] = CLI_ARGV,
): Promise<SidecarProcess> {
  const run = spawnSidecar(args, env, cli);
  const listening = await run.waitForLog((l) => l.msg === 'listening', 'listening');
  const addr = listening['listen_addr'];
  return {
    ...run,
    port: typeof addr === 'string' ? Number(addr.split(':').pop()) : 0,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (run.child.exitCode === null && run.child.signalCode === null) run.child.kill(signal);
      return run.exited;
    },
  };
}

export interface ProxyTunnel {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly socket: Socket;
  /** Bytes after the response head: a refusal's body, or the first tunnel bytes. */
  readonly head: Buffer;
}

/** `CONNECT authority` to a plain HTTP proxy (TCP port or Unix socket), as HTTPS_PROXY clients do. */
export function proxyConnect(
  where: { port: number } | { socketPath: string },
  authority: string,
  headers: Record<string, string> = {},
): Promise<ProxyTunnel> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      ...('port' in where ? { host: '127.0.0.1', port: where.port } : { socketPath: where.socketPath }),
      method: 'CONNECT',
      path: authority,
      headers: { host: authority, ...headers },
      agent: false,
    });
    req.once('connect', (res, socket, head) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers, socket, head });
    });
    req.once('error', reject);
    req.end();
  });
}

/** Sends a raw request head to the proxy and returns the raw response (until the proxy closes). */
export function rawProxyRequest(port: number, requestHead: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(requestHead));
    let text = '';
    socket.setEncoding('latin1').on('data', (d: string) => {
      text += d;
    });
    socket.once('close', () => resolve(text));
    socket.once('error', reject);
  });
}

/** The flags that point a sidecar at a gateway with an agent's files, listening on an ephemeral port. */
export function sidecarArgs(
  opts: {
    readonly gateway: string;
    readonly caPath: string;
    readonly agent: { readonly certPath: string; readonly keyPath: string };
  },
  extra: readonly string[] = [],
): string[] {
  return [
    '--gateway',
    opts.gateway,
    '--gateway-ca',
    opts.caPath,
    '--cert',
    opts.agent.certPath,
    '--key',
    opts.agent.keyPath,
    '--listen',
    '127.0.0.1:0',
    ...extra,
  ];
}
