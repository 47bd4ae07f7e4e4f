import postgres from 'postgres';
import { assertSchemaVersion } from '../../registry/schema-version.js';
import { resolveDatabaseUrl } from '../database-url.js';
import type { Io } from './action.js';
import { usageError } from './errors.js';

/** Waiting longer than this for a row lock means something else holds it; give up with an error. */
const LOCK_TIMEOUT_MS = 15_000;

/**
 * Opens the registry named by --database-url or AGENT_GATEWAY_DATABASE_URL, checks that its schema is the
 * one this build writes, runs `work`, and closes the connection whatever happens.
 */
export async function withRegistry<T>(
  flagUrl: string | undefined,
  io: Io,
  work: (sql: postgres.Sql) => Promise<T>,
): Promise<T> {
  const url = resolveDatabaseUrl(flagUrl, io.env);
  if (!url.ok) throw usageError(url.message);
  const sql = postgres(url.value, {
    max: 2,
    onnotice: () => {},
    connect_timeout: 10,
    connection: { application_name: 'agent-gateway-admin', lock_timeout: LOCK_TIMEOUT_MS },
  });
  try {
    await assertSchemaVersion(sql);
    return await work(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
