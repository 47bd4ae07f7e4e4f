import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built CLI, exactly what `npx agent-gateway` runs (npm test builds before testing). */
export const CLI_PATH = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** The node flags of the CLI's shebang (src/cli/main.ts says why each is there). */
export const CLI_NODE_FLAGS: readonly string[] = ['--disable-sigusr1', '--max-semi-space-size=4'];

/**
 * The launch flags the running Node accepts, for benchmarks that also run under Node 20 for before/after
 * figures: Node 20 has no `--disable-sigusr1`, so there the CLI runs with none, as round 1 shipped it.
 */
export const CLI_NODE_FLAGS_ON_THIS_NODE: readonly string[] =
  Number(process.versions.node.split('.')[0]) >= 22 ? CLI_NODE_FLAGS : [];

/**
 * The node arguments that run the CLI as its shebang does, for spawning it with process.execPath, which
 * is the pinned Node 24 under `npm test`.
 */
export const CLI_ARGV: readonly string[] = [...CLI_NODE_FLAGS, CLI_PATH];

export type LogLine = Record<string, unknown> & { msg: string };

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly logs: LogLine[];
  readonly stderr: () => string;
  /** Resolves with the first log line (already seen or future) that matches. */
  waitForLog(predicate: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
  /** SIGTERM and wait for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export interface GatewayConfigInput {
  readonly dir: string;
  readonly databaseUrl: string;
  readonly certPath: string;
  readonly keyPath: string;
  readonly allowCidrs?: readonly string[];
  readonly extraServer?: string;
  /** server.drain_delay_s; 0 unless a test is about draining, so that stopping a gateway is quick. */
  readonly drainDelayS?: number;
  readonly extraEgress?: string;
  /** Lines for the `[observability]` table (OTLP settings, per-identity metrics). */
  readonly extraObservability?: string;
  readonly extraPolicy?: string;
  /** Whole tables appended at the end (e.g. an `[admin]` table). */
  readonly extraTables?: string;
}

/** Writes a gateway config.toml listening on an ephemeral loopback port. */
export async function writeGatewayConfig(input: GatewayConfigInput): Promise<string> {
  const path = join(input.dir, `gateway-${Math.random().toString(36).slice(2)}.toml`);
  const cidrs = (input.allowCidrs ?? ['127.0.0.0/8', '::1/128']).map((c) => JSON.stringify(c)).join(', ');
  await writeFile(
    path,
    [
      '[server]',
      'listen_addr = "127.0.0.1:0"',
      `tls_cert_path = ${JSON.stringify(input.certPath)}`,
      `tls_key_path = ${JSON.stringify(input.keyPath)}`,
      'shutdown_grace_s = 5',
      `drain_delay_s = ${input.drainDelayS ?? 0}`,
      input.extraServer ?? '',
      '[observability]',
      'log_level = "info"',
      input.extraObservability ?? '',
      '[policy]',
      `database_url = ${JSON.stringify(input.databaseUrl)}`,
      input.extraPolicy ?? '',
      '[egress]',
      `allow_cidrs = [${cidrs}]`,
      input.extraEgress ?? '',
      input.extraTables ?? '',
      '',
    ].join('\n'),
  );
  return path;
}

/** A CLI command in a child process whose stdout is JSON log lines, collected as they arrive. */
export interface JsonLineProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  readonly stderr: () => string;
  /** Resolves with the first log line (already seen or future) that matches. */
  waitForLog(predicate: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
  exited: Promise<number | null>;
}

/**
 * Runs `agent-gateway ARGS…` (the built CLI) with `env` added, reading its JSON log lines. `cli` is how
 * node runs the CLI: as its shebang does (the default), or e.g. `[CLI_PATH]` for `node dist/cli/main.js`.
 */
export function spawnJsonLineProcess(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  name: string,
  cli: readonly string[] = CLI_ARGV,
): JsonLineProcess {
  const child = spawn(process.execPath, [...cli, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const logs: LogLine[] = [];
  const waiters: Array<{ predicate: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  let stderr = '';
  let pending = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      const text = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
      if (text.trim() === '') continue;
      const line = JSON.parse(text) as LogLine;
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.predicate(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  // 'close', not 'exit': it comes after stdout/stderr are fully read, so no log line is missed.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));

  const waitForLog = (predicate: (l: LogLine) => boolean, what = 'log line'): Promise<LogLine> => {
    const seen = logs.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      waiters.push({ predicate, resolve });
      void exited.then((code) =>
        reject(new Error(`${name} exited (code ${code}) before ${what}; stderr: ${stderr}`)),
      );
    });
  };
  return { child, logs, stderr: () => stderr, waitForLog, exited };
}

/** Starts `agent-gateway serve --config FILE` as a child process and waits for `listening`. */
export async function startGatewayProcess(
  configPath: string,
  env: NodeJS.ProcessEnv = {},
  cli: readonly string[] = CLI_ARGV,
): Promise<GatewayProcess> {
  const p = spawnJsonLineProcess(['serve', '--config', configPath], env, 'gateway', cli);
  const { child, exited } = p;
  const listening = await p.waitForLog((l) => l.msg === 'listening', 'listening');
  const port = Number(String(listening['listen_addr']).split(':').pop());
  return {
    child,
    port,
    logs: p.logs,
    stderr: p.stderr,
    waitForLog: p.waitForLog,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
