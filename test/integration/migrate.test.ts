import assert from 'node:assert/strict';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import postgres from 'postgres';
import {
  defaultMigrationsDir,
  EXTENSION_VERSION,
  listMigrations,
  MigrationError,
  migrate,
  readExtensionVersion,
  readVersion,
  SCHEMA_VERSION,
} from '../../src/registry/migrate.js';
import { assertSchemaVersion, SchemaVersionError } from '../../src/registry/schema-version.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

/**
 * Each test that needs an unmigrated registry gets an empty schema of its own inside the file's database and
 * a pool whose search_path points at it: cheaper than a database per test, and just as isolated.
 */
let db: FreshDatabase;
const pools: postgres.Sql[] = [];
let schemaCounter = 0;

async function emptySchema(): Promise<postgres.Sql> {
  const schema = `empty_${++schemaCounter}`;
  await db.sql.unsafe(`CREATE SCHEMA ${schema}`);
  const sql = postgres(db.url, { max: 3, onnotice: () => {}, connection: { search_path: schema } });
  pools.push(sql);
  return sql;
}

/**
 * The registry schema only: these tests give each case a schema of its own in one database, while the
 * extension (schema agent_gateway_ext) exists once per database; it has its own tests below.
 */
const REGISTRY_ONLY = { extension: false } as const;

/** The registry part of a result (the extension's is tested on its own). */
function registryPart(r: { from: number; to: number; applied: string[] }) {
  return { from: r.from, to: r.to, applied: r.applied };
}

async function tablesIn(sql: postgres.Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = current_schema() ORDER BY table_name`;
  return rows.map((r) => r.name);
}

before(async () => {
  db = await freshDatabase();
});

after(async () => {
  await Promise.all(pools.map((p) => p.end()));
  await db?.drop();
});

describe('migrate', () => {
  test('applies 0001 to an empty database and records version 1', async () => {
    const sql = await emptySchema();
    const result = await migrate(sql, REGISTRY_ONLY);
    assert.deepEqual(registryPart(result), { from: 0, to: 1, applied: ['0001_initial.sql'] });
    assert.deepEqual(await tablesIn(sql), [
      'agent_gateway_schema_version',
      'permission_registry',
      'principal_key_permissions',
      'principal_signing_keys',
    ]);
  });

  test('is idempotent: a second run applies nothing', async () => {
    const sql = await emptySchema();
    await migrate(sql, REGISTRY_ONLY);
    assert.deepEqual(registryPart(await migrate(sql, REGISTRY_ONLY)), { from: 1, to: 1, applied: [] });
    const versions = await sql`SELECT version FROM agent_gateway_schema_version`;
    assert.deepEqual(
      versions.map((r) => r['version']),
      [1],
    );
  });

  test('concurrent runs apply each file exactly once (advisory lock)', async () => {
    const sql = await emptySchema();
    const results = await Promise.all([
      migrate(sql, REGISTRY_ONLY),
      migrate(sql, REGISTRY_ONLY),
      migrate(sql, REGISTRY_ONLY),
    ]);
    assert.deepEqual(
      results.flatMap((r) => r.applied),
      ['0001_initial.sql'],
    );
    assert.ok(results.every((r) => r.to === 1));
  });

  test('the freshDatabase helper hands out a migrated database', async () => {
    assert.equal(await readVersion(db.sql), SCHEMA_VERSION);
  });

  test('refuses a database newer than the newest migration file, changing nothing', async () => {
    const sql = await emptySchema();
    await migrate(sql, REGISTRY_ONLY);
    await sql`INSERT INTO agent_gateway_schema_version (version) VALUES (2)`;
    await assert.rejects(migrate(sql, REGISTRY_ONLY), (err: unknown) => {
      assert.ok(err instanceof MigrationError);
      assert.match(err.message, /registry schema is version 2, newer than this agent-gateway knows \(1\)/);
      assert.match(err.message, /upgrade agent-gateway/);
      return true;
    });
    assert.equal(await readVersion(sql), 2);
  });

  test('the shipped migrations end at SCHEMA_VERSION', async () => {
    const files = await listMigrations(defaultMigrationsDir());
    assert.equal(files.at(-1)?.version, SCHEMA_VERSION);
    assert.equal(files[0]?.name, '0001_initial.sql');
  });

  test('applies later files in order, each recording its version', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ag-migrations-'));
    try {
      await cp(join(defaultMigrationsDir(), '0001_initial.sql'), join(dir, '0001_initial.sql'));
      await writeFile(
        join(dir, '0002_extra.sql'),
        'CREATE TABLE extra (id INT);\nINSERT INTO agent_gateway_schema_version (version) VALUES (2);\n',
      );
      await writeFile(join(dir, 'README.txt'), 'not a migration');
      const sql = await emptySchema();
      assert.deepEqual(registryPart(await migrate(sql, { migrationsDir: dir, extension: false })), {
        from: 0,
        to: 2,
        applied: ['0001_initial.sql', '0002_extra.sql'],
      });
      assert.ok((await tablesIn(sql)).includes('extra'));
      // The real migrations now see a database they do not know.
      await assert.rejects(migrate(sql, REGISTRY_ONLY), MigrationError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('rolls back a file that does not record its version', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ag-migrations-'));
    try {
      await cp(join(defaultMigrationsDir(), '0001_initial.sql'), join(dir, '0001_initial.sql'));
      await writeFile(join(dir, '0002_forgetful.sql'), 'CREATE TABLE forgetful (id INT);\n');
      const sql = await emptySchema();
      await assert.rejects(
        migrate(sql, { migrationsDir: dir, extension: false }),
        /0002_forgetful\.sql left the registry schema at version 1/,
      );
      assert.equal(await readVersion(sql), 1, '0001 stays applied: every file has its own transaction');
      assert.ok(!(await tablesIn(sql)).includes('forgetful'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('refuses a migrations directory with a gap', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ag-migrations-'));
    try {
      await writeFile(join(dir, '0001_a.sql'), 'SELECT 1;');
      await writeFile(join(dir, '0003_c.sql'), 'SELECT 1;');
      await assert.rejects(
        listMigrations(dir),
        /without gaps or duplicates; found 0003_c\.sql at position 2/,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('0001 is plain SQL that can be applied twice, as `psql -f` would', async () => {
    const sql = await emptySchema();
    const text = await readFile(join(defaultMigrationsDir(), '0001_initial.sql'), 'utf8');
    await sql.unsafe(text).simple();
    await sql.unsafe(text).simple();
    assert.equal(await readVersion(sql), 1);
    assert.deepEqual(registryPart(await migrate(sql, REGISTRY_ONLY)), { from: 1, to: 1, applied: [] });
  });

  test('the schema enforces the interop checks', async () => {
    const sql = await emptySchema();
    await migrate(sql, REGISTRY_ONLY);
    const spki = Buffer.from('3059', 'hex');
    const insertKey = (
      keyId: string,
      algorithm: string,
      key: Buffer,
      window = "now(), now() + interval '1 day'",
    ) =>
      sql.unsafe(
        `INSERT INTO principal_signing_keys (key_id, algorithm, public_key_spki_der, not_before, not_after)
         VALUES ($1, $2, $3, ${window})`,
        [keyId, algorithm, key],
      );
    await assert.rejects(insertKey('', 'ecdsa_p256_sha256', spki), /principal_signing_keys_key_id_not_empty/);
    await assert.rejects(insertKey('k', 'rsa', spki), /principal_signing_keys_algorithm_supported/);
    await assert.rejects(
      insertKey('k', 'ecdsa_p256_sha256', spki, "now(), now() - interval '1 day'"),
      /principal_signing_keys_window_ordered/,
    );
    await insertKey('k1', 'ecdsa_p256_sha256', spki);
    await assert.rejects(
      insertKey('k2', 'ecdsa_p256_sha256', spki),
      /principal_signing_keys_public_key_unique/,
    );
    await assert.rejects(
      sql`INSERT INTO principal_key_permissions (signing_key_id, destination, not_before, not_after)
          VALUES ('k1', '', now(), now() + interval '1 day')`,
      /principal_key_permissions_destination_not_empty/,
    );
    await assert.rejects(
      sql`INSERT INTO principal_key_permissions (signing_key_id, destination, not_before, not_after)
          VALUES ('nobody', 'a:443', now(), now() + interval '1 day')`,
      /foreign key/,
    );
    const insertPermission = (id: string, identity: string, destination: string) =>
      sql`INSERT INTO permission_registry (permission_id, signing_key_id, subject_identity,
            subject_public_key_spki_der, destination, not_before, not_after, signature)
          VALUES (${id}, 'k1', ${identity}, ${spki}, ${destination}, now(), now() + interval '1 day', '\\x00')`;
    await assert.rejects(insertPermission('', 'a', 'a:443'), /permission_registry_permission_id_not_empty/);
    await assert.rejects(
      insertPermission('p', '', 'a:443'),
      /permission_registry_subject_identity_not_empty/,
    );
    await assert.rejects(insertPermission('p', 'a', ''), /permission_registry_destination_not_empty/);
    await insertPermission('p', 'a', 'a:443');
    const indexes = await sql<{ name: string; def: string }[]>`
      SELECT indexname AS name, indexdef AS def FROM pg_indexes
      WHERE schemaname = current_schema() AND indexname LIKE '%live_lookup_idx' ORDER BY indexname`;
    assert.equal(indexes.length, 2);
    assert.match(
      indexes[0]?.def ?? '',
      /permission_registry .*\(subject_identity, destination, subject_public_key_spki_der, not_after DESC\) WHERE \(revoked_at IS NULL\)/,
    );
    assert.match(
      indexes[1]?.def ?? '',
      /principal_key_permissions .*\(signing_key_id, destination\) WHERE \(revoked_at IS NULL\)/,
    );
  });
});

describe('assertSchemaVersion', () => {
  test('passes on a current registry', async () => {
    await assertSchemaVersion(db.sql);
  });

  test('names the version found, the version needed and the fix', async () => {
    const sql = await emptySchema();
    await migrate(sql);
    await sql`INSERT INTO agent_gateway_schema_version (version) VALUES (7)`;
    await assert.rejects(assertSchemaVersion(sql), (err: unknown) => {
      assert.ok(err instanceof SchemaVersionError);
      assert.match(err.message, /^registry schema is version 7, this gateway needs 1: upgrade agent-gateway/);
      return true;
    });
    await sql`DELETE FROM agent_gateway_schema_version`;
    await assert.rejects(
      assertSchemaVersion(sql),
      /^SchemaVersionError: registry schema is version 0, this gateway needs 1: run `agent-gateway migrate --database-url …`/,
    );
  });

  test('explains a database that was never migrated', async () => {
    const sql = await emptySchema();
    await assert.rejects(assertSchemaVersion(sql), (err: unknown) => {
      assert.ok(err instanceof SchemaVersionError);
      assert.match(err.message, /no agent_gateway_schema_version table/);
      assert.match(err.message, /agent-gateway migrate --database-url/);
      return true;
    });
  });
});

describe('the agent_gateway_ext extension', () => {
  const dbs: FreshDatabase[] = [];
  after(async () => {
    await Promise.all(dbs.map((d) => d.drop()));
  });
  async function unmigrated(): Promise<FreshDatabase> {
    const fresh = await freshDatabase({ migrate: false });
    dbs.push(fresh);
    return fresh;
  }

  test('migrate applies it after the registry, which stays at version 1 for the original gateway', async () => {
    const { sql } = await unmigrated();
    const result = await migrate(sql);
    assert.deepEqual(registryPart(result), { from: 0, to: 1, applied: ['0001_initial.sql'] });
    assert.deepEqual(result.extension, {
      from: 0,
      to: EXTENSION_VERSION,
      applied: ['0001_live_authorization.sql', '0002_dashboard_revocation.sql', '0003_budgets.sql'],
    });
    assert.equal(await readVersion(sql), 1);
    assert.equal(await readExtensionVersion(sql), EXTENSION_VERSION);
    // The original's own check: exactly one version row, 1.
    assert.deepEqual(
      (await sql`SELECT version FROM agent_gateway_schema_version`).map((r) => r['version']),
      [1],
    );
    assert.deepEqual((await migrate(sql)).extension, {
      from: EXTENSION_VERSION,
      to: EXTENSION_VERSION,
      applied: [],
    });
  });

  test('a registry without it reads as extension version 0, and migrate adds it later', async () => {
    const { sql } = await unmigrated();
    await migrate(sql, { extension: false });
    assert.equal(await readExtensionVersion(sql), 0);
    assert.equal((await migrate(sql)).extension.to, EXTENSION_VERSION);
  });

  test('its files apply with psql -f semantics, twice, after the registry file', async () => {
    const { sql } = await unmigrated();
    const dir = defaultMigrationsDir();
    const extension = (await readdir(join(dir, 'extension'))).filter((f) => f.endsWith('.sql')).sort();
    assert.equal(extension.length, EXTENSION_VERSION);
    for (const file of ['0001_initial.sql', ...extension.map((f) => `extension/${f}`)]) {
      const text = await readFile(join(dir, file), 'utf8');
      await sql.unsafe(text).simple();
      await sql.unsafe(text).simple();
    }
    assert.equal(await readExtensionVersion(sql), EXTENSION_VERSION);
    assert.equal((await migrate(sql)).extension.applied.length, 0);
  });

  test('refuses an extension newer than this build knows', async () => {
    const { sql } = await unmigrated();
    await migrate(sql);
    await sql`INSERT INTO agent_gateway_ext.schema_version (version) VALUES (${EXTENSION_VERSION + 1})`;
    await assert.rejects(
      migrate(sql),
      /extension agent_gateway_ext is version \d+, newer than this agent-gateway knows/,
    );
  });

  test('UPDATE, DELETE and TRUNCATE of each registry table notify once per statement; INSERT does not', async () => {
    const fresh = await unmigrated();
    await migrate(fresh.sql);
    const listener = postgres(fresh.url, { max: 1, onnotice: () => {} });
    pools.push(listener);
    const seen: string[] = [];
    let arrived: (() => void) | undefined;
    await listener.listen('agent_gateway_registry_changed', (payload) => {
      seen.push(payload);
      arrived?.();
    });
    const next = () => new Promise<void>((resolve) => (arrived = resolve));
    const { sql } = fresh;
    // Nothing for INSERTs: a new row can only allow more.
    await sql`INSERT INTO principal_signing_keys (key_id, algorithm, public_key_spki_der, not_before, not_after)
      VALUES ('k1', 'ecdsa_p256_sha256', '\\x01', now(), now() + interval '1 day'),
             ('k2', 'ecdsa_p256_sha256', '\\x02', now(), now() + interval '1 day')`;
    await sql`INSERT INTO principal_key_permissions (signing_key_id, destination, not_before, not_after)
      VALUES ('k1', 'a:443', now(), now() + interval '1 day')`;
    let wait = next();
    // One statement touching two rows: one notification.
    await sql`UPDATE principal_signing_keys SET revoked_at = now()`;
    await wait;
    wait = next();
    await sql`DELETE FROM principal_key_permissions`;
    await wait;
    wait = next();
    await sql`TRUNCATE permission_registry`;
    await wait;
    assert.deepEqual(seen, [
      'principal_signing_keys UPDATE',
      'principal_key_permissions DELETE',
      'permission_registry TRUNCATE',
    ]);
  });
});
