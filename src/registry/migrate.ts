import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type postgres from 'postgres';

/** The registry schema version this build of the gateway reads (the newest file in `migrations/`). */
export const SCHEMA_VERSION = 1;

/** The extension version this build ships (the newest file in `migrations/extension/`). */
export const EXTENSION_VERSION = 3;

/**
 * A numbered series of migration files with a version table of its own. Two exist: the registry
 * (interop contract; version table agent_gateway_schema_version, on the search_path) and our extension
 * (schema agent_gateway_ext), which the original gateway never sees, so the registry stays at version 1.
 */
export interface MigrationSet {
  /** For messages: "registry schema" or "extension agent_gateway_ext". */
  readonly label: string;
  readonly dir: string;
  /** Where its version table lives: a schema name, or undefined for the search_path (the registry's). */
  readonly schema: string | undefined;
  readonly table: string;
}

export function registrySet(migrationsDir = defaultMigrationsDir()): MigrationSet {
  return {
    label: 'registry schema',
    dir: migrationsDir,
    schema: undefined,
    table: 'agent_gateway_schema_version',
  };
}

export function extensionSet(migrationsDir = defaultMigrationsDir()): MigrationSet {
  return {
    label: 'extension agent_gateway_ext',
    dir: join(migrationsDir, 'extension'),
    schema: 'agent_gateway_ext',
    table: 'schema_version',
  };
}

export class MigrationError extends Error {
  override name = 'MigrationError';
}

export interface MigrationFile {
  readonly version: number;
  readonly name: string;
  readonly path: string;
}

export interface MigrateResult {
  /** Version found before migrating (0 for an empty database). */
  readonly from: number;
  /** Version after migrating. */
  readonly to: number;
  /** File names applied by this call, in order (empty when already current). */
  readonly applied: string[];
}

/**
 * Arbitrary but fixed: every migrator (ours, on any host) takes the same transaction-scoped advisory lock,
 * so two concurrent `migrate` runs apply each file once instead of racing on CREATE TABLE.
 */
export const MIGRATION_LOCK_KEY = 0x6167_6d31; // "agm1"

const FILE_NAME = /^(\d{4})_[A-Za-z0-9_-]+\.sql$/;

export interface MigrateAllResult extends MigrateResult {
  /** The extension's versions and files, applied after the registry's. */
  readonly extension: MigrateResult;
}

/**
 * Applies the registry migrations (`migrations/NNNN_*.sql`), then the extension's
 * (`migrations/extension/NNNN_*.sql`), each file in its own transaction. Idempotent: a database that is
 * already current gets no statements but the version reads. A database newer than the newest file is
 * refused, because an old binary must not guess at a schema it does not know.
 */
export async function migrate(
  sql: postgres.Sql,
  opts?: { migrationsDir?: string; extension?: boolean },
): Promise<MigrateAllResult> {
  const dir = opts?.migrationsDir ?? defaultMigrationsDir();
  const registry = await migrateSet(sql, registrySet(dir));
  const extension =
    opts?.extension === false || !existsSync(extensionSet(dir).dir)
      ? { from: 0, to: 0, applied: [] }
      : await migrateSet(sql, extensionSet(dir));
  return { ...registry, extension };
}

/** Applies one set's files in order (see migrate). */
export async function migrateSet(sql: postgres.Sql, set: MigrationSet): Promise<MigrateResult> {
  const files = await listMigrations(set.dir);
  const newest = files.at(-1)?.version ?? 0;
  const from = await readSetVersion(sql, set);
  if (from > newest) throw tooNew(set, from, newest);

  const applied: string[] = [];
  for (const file of files) {
    if (file.version <= from) continue;
    const text = await readFile(file.path, 'utf8');
    const didApply = await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::bigint)`;
      // Re-read under the lock: another migrator may have applied this file while we waited.
      const current = await readSetVersion(tx, set);
      if (current > newest) throw tooNew(set, current, newest);
      if (current >= file.version) return false;
      // Simple protocol: a migration file holds many statements and no parameters.
      await tx.unsafe(text).simple();
      const after = await readSetVersion(tx, set);
      if (after !== file.version) {
        throw new MigrationError(
          `migration ${file.name} left the ${set.label} at version ${after}, expected ${file.version}: ` +
            `each file must INSERT its own version into ${qualified(set)} (rolled back)`,
        );
      }
      return true;
    });
    if (didApply) applied.push(file.name);
  }
  return { from, to: Math.max(from, await readSetVersion(sql, set)), applied };
}

/** The registry's schema version: 0 when its version table does not exist yet. */
export async function readVersion(sql: postgres.ISql): Promise<number> {
  return readSetVersion(sql, registrySet(NO_DIR));
}

/** The extension's version: 0 when the registry does not have it. */
export async function readExtensionVersion(sql: postgres.ISql): Promise<number> {
  return readSetVersion(sql, extensionSet(NO_DIR));
}

/** Reading a version needs no directory. */
const NO_DIR = '';

/** Whether agent_gateway_schema_version exists on the search_path. */
export async function versionTableExists(sql: postgres.ISql): Promise<boolean> {
  return setTableExists(sql, registrySet(NO_DIR));
}

async function readSetVersion(sql: postgres.ISql, set: MigrationSet): Promise<number> {
  if (!(await setTableExists(sql, set))) return 0;
  const [row] = await sql.unsafe<{ version: number | null }[]>(
    `SELECT max(version) AS version FROM ${qualified(set)}`,
  );
  return row?.version ?? 0;
}

/**
 * Reads pg_class with the statement's snapshot rather than calling to_regclass(): to_regclass takes no
 * lock, so it may answer from a stale catalog cache and miss a table another migrator committed while we
 * waited for the advisory lock.
 */
async function setTableExists(sql: postgres.ISql, set: MigrationSet): Promise<boolean> {
  const [row] = await sql<{ present: boolean }[]>`
    SELECT EXISTS (
      SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relname = ${set.table}
        AND (${set.schema ?? null}::text IS NULL AND n.nspname = ANY (current_schemas(false))
             OR n.nspname = ${set.schema ?? null}::text)
    ) AS present`;
  return row?.present === true;
}

function qualified(set: MigrationSet): string {
  return set.schema === undefined ? set.table : `${set.schema}.${set.table}`;
}

/** Migration files in version order; refuses gaps and duplicates (a broken install, not a database state). */
export async function listMigrations(dir: string): Promise<MigrationFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    throw new MigrationError(
      `cannot read migrations directory ${dir}: ${(err as Error).message} (is the package installed completely?)`,
    );
  }
  const files: MigrationFile[] = [];
  for (const name of names.sort()) {
    const m = FILE_NAME.exec(name);
    if (m?.[1] === undefined) continue;
    files.push({ version: Number(m[1]), name, path: join(dir, name) });
  }
  files.forEach((f, i) => {
    if (f.version !== i + 1) {
      throw new MigrationError(
        `migrations in ${dir} must be numbered 0001, 0002, … without gaps or duplicates; found ${f.name} at position ${i + 1}`,
      );
    }
  });
  return files;
}

/**
 * `<package root>/migrations`, found by walking up from this module to the directory holding package.json,
 * so it works from `src/registry` (tsx) and from `dist/registry` (built) alike.
 */
export function defaultMigrationsDir(): string {
  const start = dirname(fileURLToPath(import.meta.url));
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'migrations');
    const parent = dirname(dir);
    if (parent === dir) {
      throw new MigrationError(`no package.json above ${start}: cannot locate the migrations directory`);
    }
    dir = parent;
  }
}

function tooNew(set: MigrationSet, found: number, newest: number): MigrationError {
  return new MigrationError(
    `${set.label} is version ${found}, newer than this agent-gateway knows (${newest}): ` +
      `upgrade agent-gateway instead of migrating this database`,
  );
}
