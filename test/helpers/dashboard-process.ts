import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import postgres from 'postgres';
import { DASHBOARD_ROLE, ensureRole } from '../../src/registry/gateway-role.js';
import type { FreshDatabase } from './db.js';
import { type LogLine, spawnJsonLineProcess } from './gateway-process.js';

export interface DashboardProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly logs: LogLine[];
  waitForLog(predicate: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
  stop(): Promise<number | null>;
}

export interface DashboardRole {
  /** A URL that connects as the dashboard's role (SELECT and the revocation functions only). */
  readonly url: string;
  readonly name: string;
  drop(): Promise<void>;
}

/** The dashboard's own role on a test database, as `migrate --dashboard-role` makes it. */
export async function dashboardRole(db: FreshDatabase): Promise<DashboardRole> {
  const name = `ag_dash_${process.pid}_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(18).toString('base64url');
  await ensureRole(db.sql, DASHBOARD_ROLE, { name, password });
  const url = new URL(db.url);
  url.username = name;
  url.password = password;
  return {
    url: url.toString(),
    name,
    async drop() {
      // Its sessions may still be open when a test ends.
      await db.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${name}`;
      await db.sql.unsafe(`DROP OWNED BY ${name}`);
      await db.sql.unsafe(`DROP ROLE ${name}`);
    },
  };
}

export interface DashboardConfigInput {
  readonly dir: string;
  readonly databaseUrl: string;
  readonly gateways: ReadonlyArray<{ name: string; adminUrl: string; tokenEnv: string }>;
  /** How often the dashboard samples tunnels (default 250 ms: quick tests). */
  readonly sampleIntervalMs?: number;
  /** More `[dashboard]` keys. */
  readonly extra?: string;
  /** Whole tables appended at the end (e.g. `[[operators]]`). */
  readonly tables?: string;
}

export async function writeDashboardConfig(input: DashboardConfigInput): Promise<string> {
  const path = join(input.dir, `dashboard-${randomBytes(4).toString('hex')}.toml`);
  await writeFile(
    path,
    [
      '[dashboard]',
      'listen_addr = "127.0.0.1:0"',
      'token_env = "TEST_DASHBOARD_TOKEN"',
      'readonly_token_env = "TEST_DASHBOARD_READ_TOKEN"',
      'ingest_token_env = "TEST_DASHBOARD_INGEST_TOKEN"',
      `sample_interval_ms = ${input.sampleIntervalMs ?? 250}`,
      input.extra ?? '',
      '[registry]',
      `database_url = ${JSON.stringify(input.databaseUrl)}`,
      ...input.gateways.flatMap((g) => [
        '[[gateways]]',
        `name = ${JSON.stringify(g.name)}`,
        `admin_url = ${JSON.stringify(g.adminUrl)}`,
        `token_env = ${JSON.stringify(g.tokenEnv)}`,
      ]),
      input.tables ?? '',
      '',
    ].join('\n'),
  );
  return path;
}

/** `agent-gateway dashboard --config FILE` as a child process, once it logs `dashboard listening`. */
export async function startDashboardProcess(
  configPath: string,
  env: NodeJS.ProcessEnv,
): Promise<DashboardProcess> {
  const p = spawnJsonLineProcess(['dashboard', '--config', configPath], env, 'dashboard');
  const listening = await p.waitForLog((l) => l.msg === 'dashboard listening', 'dashboard listening');
  return {
    child: p.child,
    url: String(listening['dashboard_url']),
    logs: p.logs,
    waitForLog: p.waitForLog,
    async stop() {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      return p.exited;
    },
  };
}

/** A connection as the dashboard role, to check what it can and cannot do. */
export function connectAsRole(role: DashboardRole): postgres.Sql {
  return postgres(role.url, { max: 1, onnotice: () => {} });
}
