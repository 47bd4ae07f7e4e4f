import postgres from 'postgres';
import { migrate } from '../registry/migrate.js';
import { resolveDatabaseUrl } from './database-url.js';

/** `agent-gateway migrate`: bring the registry schema to this version, or explain why not. */
export async function runMigrate(flagUrl: string | undefined): Promise<number> {
  const url = resolveDatabaseUrl(flagUrl);
  if (!url.ok) {
    process.stderr.write(`${url.message}\n`);
    return 2;
  }
  const sql = postgres(url.value, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const result = await migrate(sql);
    process.stdout.write(
      result.applied.length === 0
        ? `registry is at schema version ${result.to}; nothing to apply\n`
        : `registry migrated from version ${result.from} to ${result.to}: applied ${result.applied.join(', ')}\n`,
    );
    return 0;
  } catch (err) {
    process.stderr.write(`agent-gateway migrate: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}
