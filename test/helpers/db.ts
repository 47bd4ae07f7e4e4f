import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { startEmbeddedPostgres } from '../../src/devdb/embedded.js';
import { migrate } from '../../src/registry/migrate.js';

export interface FreshDatabase {
  /** Admin connection (superuser on the test server) to the new, migrated database. */
  sql: postgres.Sql;
  /** URL of the new database, for code under test that opens its own pool. */
  url: string;
  /** Closes `sql` and drops the database (terminating any connection still open to it). */
  drop(): Promise<void>;
}

/**
 * A new, migrated (unless `migrate: false`) database of its own on the TEST_DATABASE_URL server, so test files running in parallel
 * never see each other's rows. Without TEST_DATABASE_URL (a file run by hand) the first call starts an
 * embedded server for this process.
 */
export async function freshDatabase(opts: { migrate?: boolean } = {}): Promise<FreshDatabase> {
  const serverUrl = await testServerUrl();
  const name = `ag_test_${process.pid}_${randomBytes(6).toString('hex')}`;
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(serverUrl, name);
  const sql = postgres(url, { max: 4, onnotice: () => {} });
  try {
    if (opts.migrate !== false) await migrate(sql);
  } catch (err) {
    await sql.end();
    await dropDatabase(serverUrl, name);
    throw err;
  }
  let dropping: Promise<void> | undefined;
  return {
    sql,
    url,
    drop() {
      dropping ??= (async () => {
        await sql.end({ timeout: 5 });
        await dropDatabase(serverUrl, name);
      })();
      return dropping;
    },
  };
}

async function dropDatabase(serverUrl: string, name: string): Promise<void> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    // FORCE: a pool under test that was not closed must not leave the database behind.
    await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

/** The same server and credentials, another database name. */
export function withDatabase(serverUrl: string, database: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${database}`;
  return u.toString();
}

let embedded: Promise<string> | undefined;

async function testServerUrl(): Promise<string> {
  const configured = process.env['TEST_DATABASE_URL'];
  if (configured) return configured;
  embedded ??= startOwnServer();
  return embedded;
}

/** For a single file run by hand: one embedded server for this process, removed when it ends. */
async function startOwnServer(): Promise<string> {
  const scratch = await mkdtemp(join(tmpdir(), 'agent-gateway-test-db-'));
  const server = await startEmbeddedPostgres({ dataDir: join(scratch, 'pgdata'), persistent: false });
  const cleanup = async () => {
    await server.stop();
    await rm(scratch, { recursive: true, force: true });
  };
  // Unreferenced, the server no longer keeps this process alive: once the last test is done the event
  // loop empties, 'beforeExit' fires, and we stop and delete it. A signal does the same and ends the run.
  server.unref();
  process.once('beforeExit', () => void cleanup());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143)));
  }
  return server.url;
}
