import type postgres from 'postgres';
import { readVersion, SCHEMA_VERSION, versionTableExists } from './migrate.js';

export class SchemaVersionError extends Error {
  override name = 'SchemaVersionError';
}

/**
 * Refuses to serve on a registry whose schema this build does not read: running on a guessed schema would
 * turn a missing column into a silent allow or deny. Needs only SELECT, like the rest of the gateway.
 */
export async function assertSchemaVersion(sql: postgres.Sql): Promise<void> {
  if (!(await versionTableExists(sql))) {
    throw new SchemaVersionError(
      `registry has no agent_gateway_schema_version table (database never migrated, or search_path points ` +
        `elsewhere): this gateway needs schema version ${SCHEMA_VERSION}: run \`agent-gateway migrate --database-url …\``,
    );
  }
  const found = await readVersion(sql);
  if (found === SCHEMA_VERSION) return;
  const advice =
    found > SCHEMA_VERSION
      ? 'upgrade agent-gateway to a release that knows this schema'
      : 'run `agent-gateway migrate --database-url …`';
  throw new SchemaVersionError(
    `registry schema is version ${found}, this gateway needs ${SCHEMA_VERSION}: ${advice}`,
  );
}
