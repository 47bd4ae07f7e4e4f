import { postgresUrlProblem } from '../config/database-url.js';

/** The environment variable every database-using command falls back to when --database-url is absent. */
export const DATABASE_URL_ENV = 'AGENT_GATEWAY_DATABASE_URL';

export type DatabaseUrlResult = { ok: true; value: string } | { ok: false; message: string };

export function resolveDatabaseUrl(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): DatabaseUrlResult {
  const value = flag ?? env[DATABASE_URL_ENV];
  if (value === undefined || value.trim() === '') {
    return {
      ok: false,
      message: `no database URL: pass --database-url postgres://… or set ${DATABASE_URL_ENV}`,
    };
  }
  const problem = postgresUrlProblem(value);
  if (problem !== undefined) return { ok: false, message: `the database URL ${problem}` };
  return { ok: true, value };
}
