import { createWriteStream } from 'node:fs';
import { appendFile, chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import postgres from 'postgres';
import { loadConfig } from '../../config/load.js';
import { startEmbeddedPostgres } from '../../devdb/embedded.js';
import { type RunningGateway, startGateway } from '../../gateway/gateway.js';
import { createLogger, flushLogger } from '../../observability/logger.js';
import { migrate } from '../../registry/migrate.js';
import type { Io } from '../admin/action.js';
import { DEMO_GATEWAY_ADMIN_TOKEN_ENV, demoToken, startDemoDashboard } from './dashboard.js';
import { ensureDemoGrants } from './grants.js';
import { demoInstructions } from './instructions.js';
import { ensureDemoPki } from './pki.js';
import { readDemoPorts, writeDemoPorts } from './state-file.js';
import { startDemoTarget } from './target.js';

export interface DemoOptions {
  /** Where everything lives between runs (default `.demo`, git-ignored). */
  stateDir: string;
  /** Gateway port; default: the one remembered from the last run, else a free one. */
  port?: number;
}

/** The gateway config reads the registry URL from this variable, set for the in-process gateway only. */
const DATABASE_URL_ENV = 'AGENT_GATEWAY_DEMO_DATABASE_URL';
const SHUTDOWN_GRACE_MS = 1000;
/** If something still holds the event loop this long after a clean shutdown, exit anyway. */
const EXIT_BACKSTOP_MS = 5000;

/**
 * `agent-gateway demo`: a complete gateway on this machine with nothing installed but Node. Starts an
 * embedded PostgreSQL in the state directory, migrates it, creates (or reuses) a PKI, a principal and two
 * agents, grants one of them a signed permission for a web server the demo itself serves on loopback, runs
 * the gateway in this process, prints commands to try, and stops everything on Ctrl-C (exit 0).
 */
export async function runDemo(opts: DemoOptions, io: Io): Promise<number> {
  const started = Date.now();
  const stateDir = resolve(opts.stateDir);
  const cleanups: Array<() => Promise<void>> = [];
  let stopping: Promise<number> | undefined;
  let interrupted = false;
  let onInterrupt: () => void = () => {};
  const signalled = new Promise<void>((resolveSignalled) => {
    onInterrupt = resolveSignalled;
  });

  /** Undoes what was started, newest first, once; then makes sure the process really ends. */
  const stop = (code: number): Promise<number> => {
    stopping ??= (async () => {
      for (const cleanup of cleanups.reverse()) {
        await cleanup().catch((err: unknown) => io.err(`demo: while stopping: ${String(err)}\n`));
      }
      setTimeout(() => process.exit(code), EXIT_BACKSTOP_MS).unref();
      return code;
    })();
    return stopping;
  };
  // A signal during start-up is acted on at the next step boundary, so that whatever is starting right
  // now (PostgreSQL, say) is registered for cleanup first.
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) {
      io.err('demo: second signal, exiting at once\n');
      process.exit(130);
    }
    interrupted = true;
    io.out(`\ndemo: ${signal}: stopping the gateway, the destination and PostgreSQL…\n`);
    onInterrupt();
  };
  // SIGHUP too: closing the terminal must not leave PostgreSQL running without us. Writing to the closed
  // terminal then fails (EIO/EPIPE); unhandled, that error would end the process before the cleanup.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
  for (const signal of signals) process.on(signal, onSignal);
  cleanups.push(async () => {
    for (const signal of signals) process.off(signal, onSignal);
  });

  try {
    await prepareStateDir(stateDir);
    const pki = await ensureDemoPki(stateDir);
    if (pki.created.length > 0) io.out(`demo: created ${pki.created.join(', ')} in ${stateDir}\n`);

    const pgDir = join(stateDir, 'pgdata');
    await refuseLeftoverPostgres(pgDir);
    io.out('demo: starting embedded PostgreSQL…\n');
    const pgLog = join(stateDir, 'postgres.log');
    const pg = await startEmbeddedPostgres({
      dataDir: pgDir,
      persistent: true,
      log: (line) => void appendFile(pgLog, line).catch(() => {}),
    });
    cleanups.push(() => pg.stop());
    io.out(`demo: PostgreSQL ${pg.reused ? 'reusing' : 'created'} ${pg.dataDir}\n`);
    // E.g. a clone in a mode-700 home directory, as root: the server's user cannot reach it.
    if (pg.note !== undefined) io.out(`demo: ${pg.note}\n`);
    if (interrupted) return stop(0);

    const databaseUrlPath = join(stateDir, 'database-url');
    await writeFile(databaseUrlPath, `${pg.url}\n`, { mode: 0o600 });
    const ports = await readDemoPorts(stateDir);
    const target = await startDemoTarget(ports.targetPort);
    cleanups.push(() => target.close());
    const destination = `127.0.0.1:${target.port}`;

    const admin = postgres(pg.url, { max: 2, onnotice: () => {} });
    let setupNotes: string[];
    try {
      await migrate(admin);
      setupNotes = await ensureDemoGrants(admin, pki, destination);
    } finally {
      await admin.end({ timeout: 5 });
    }
    if (interrupted) return stop(0);

    const logPath = join(stateDir, 'gateway.log');
    const remembered =
      ports.gatewayPort !== undefined && (await portIsFree(ports.gatewayPort)) ? ports.gatewayPort : 0;
    const gatewayAdminToken = demoToken();
    const gateway = await startDemoGateway(
      stateDir,
      pki,
      opts.port ?? remembered,
      pg.url,
      logPath,
      gatewayAdminToken,
    );
    cleanups.push(gateway.stop);
    const dashboardLog = join(stateDir, 'dashboard.log');
    const dashboard = await startDemoDashboard({
      stateDir,
      adminDatabaseUrl: pg.url,
      gatewayAdminUrl: gateway.adminUrl,
      gatewayAdminToken,
      port:
        ports.dashboardPort !== undefined && (await portIsFree(ports.dashboardPort))
          ? ports.dashboardPort
          : 0,
      logPath: dashboardLog,
    });
    cleanups.push(dashboard.stop);
    await writeDemoPorts(stateDir, {
      gatewayPort: gateway.port,
      targetPort: target.port,
      dashboardPort: dashboard.port,
    });

    io.out(
      demoInstructions(pki, {
        stateDir,
        gatewayPort: gateway.port,
        targetPort: target.port,
        postgresPort: pg.port,
        postgresDataDir: pg.dataDir,
        postgresPersistent: pg.persistent,
        logPath,
        databaseUrlPath,
        dashboard: {
          url: dashboard.url,
          adminToken: dashboard.adminToken,
          readonlyToken: dashboard.readonlyToken,
          logPath: dashboardLog,
        },
        setupNotes,
        startupMs: Date.now() - started,
      }),
    );
    await signalled;
    const code = await stop(0);
    io.out(`demo: stopped; state kept in ${stateDir}\n`);
    return code;
  } catch (err) {
    io.err(`agent-gateway demo: ${err instanceof Error ? err.message : String(err)}\n`);
    return stop(1);
  }
}

/**
 * As root, embedded PostgreSQL runs as the `postgres` user, which must be able to enter the state directory
 * on its way to the data directory: world-searchable, nothing else (keys inside are 0600). When a parent
 * directory shuts that user out anyway, the database moves to a temporary directory (devdb/embedded.ts).
 */
async function prepareStateDir(stateDir: string): Promise<void> {
  await mkdir(stateDir, { recursive: true });
  await chmod(stateDir, 0o755);
}

/**
 * A server from an earlier run that was killed outright (SIGKILL) still holds the data directory; starting
 * another would fail three times with an opaque lock error. Name it instead.
 */
async function refuseLeftoverPostgres(pgDir: string): Promise<void> {
  const pidText = await readFile(join(pgDir, 'postmaster.pid'), 'utf8').catch(() => undefined);
  const pid = Number(pidText?.split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return; // stale file: PostgreSQL cleans it up itself
  }
  throw new Error(
    `a PostgreSQL from an earlier demo run is still running on ${pgDir} (pid ${pid}): ` +
      `stop it with \`kill ${pid}\`, then start the demo again`,
  );
}

interface DemoGateway {
  port: number;
  /** Its admin listener (loopback, ephemeral port), which the demo's dashboard watches. */
  adminUrl: string;
  stop(): Promise<void>;
}

async function startDemoGateway(
  stateDir: string,
  pki: Awaited<ReturnType<typeof ensureDemoPki>>,
  port: number,
  databaseUrl: string,
  logPath: string,
  adminToken: string,
): Promise<DemoGateway> {
  const configPath = join(stateDir, 'gateway.toml');
  // A real config file, so that the demo also shows what a deployment configures; the password stays out of it.
  await writeFile(
    configPath,
    [
      '# Written by `agent-gateway demo` on every start; edits are overwritten.',
      '[server]',
      `listen_addr = "127.0.0.1:${port}"`,
      `tls_cert_path = ${JSON.stringify(pki.serverCertPath)}`,
      `tls_key_path = ${JSON.stringify(pki.serverKeyPath)}`,
      `shutdown_grace_s = ${SHUTDOWN_GRACE_MS / 1000}`,
      '# No load balancer in front of the demo: close the listener at once on Ctrl-C.',
      'drain_delay_s = 0',
      '',
      '[policy]',
      `database_url_env = "${DATABASE_URL_ENV}"`,
      '',
      '[egress]',
      '# The demo destination is on loopback, which the gateway refuses unless allowed here.',
      'allow_cidrs = ["127.0.0.0/8"]',
      '',
      '[admin]',
      "# The operators' listener, which the demo's dashboard reads (loopback only, any free port).",
      'listen_addr = "127.0.0.1:0"',
      `token_env = "${DEMO_GATEWAY_ADMIN_TOKEN_ENV}"`,
      '',
    ].join('\n'),
  );
  const loaded = await loadConfig(configPath, {
    ...process.env,
    [DATABASE_URL_ENV]: databaseUrl,
    [DEMO_GATEWAY_ADMIN_TOKEN_ENV]: adminToken,
  });
  const logStream = createWriteStream(logPath, { flags: 'a' });
  const logger = createLogger(loaded.config.observability.log_level, logStream);
  let gateway: RunningGateway;
  try {
    gateway = await startGateway(loaded, { logger });
  } catch (err) {
    logStream.end();
    throw err;
  }
  const admin = gateway.adminAddress;
  return {
    port: gateway.address.port,
    adminUrl: `http://127.0.0.1:${admin?.port ?? 0}`,
    async stop() {
      await gateway.shutdown(SHUTDOWN_GRACE_MS);
      await flushLogger(logger);
      await new Promise<void>((done) => logStream.end(done));
    },
  };
}

/** Whether the remembered port can be bound now (a port of another program must not fail the start). */
function portIsFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const probe = createServer();
    probe.once('error', () => done(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => done(true)));
  });
}
