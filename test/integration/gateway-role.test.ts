import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import postgres from 'postgres';
import {
  ensureGatewayRole,
  GATEWAY_ROLE_FUNCTION_GRANTS,
  GATEWAY_ROLE_GRANTS,
  GatewayRoleError,
} from '../../src/registry/gateway-role.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

/**
 * `migrate --gateway-role`: the role the gateway connects as can read every registry table and write none,
 * creating it twice changes nothing, and a role that could write the registry is refused, not "fixed".
 * Roles are cluster-wide, so names are unique per run and dropped at the end.
 */

let db: FreshDatabase;
const suffix = `${process.pid}_${randomBytes(4).toString('hex')}`;
const role = `ag_gw_${suffix}`;
const roles = [role, `ag_su_${suffix}`, `ag_writer_${suffix}`];
const PASSWORD = 'a-test-password-of-some-length';

before(async () => {
  db = await freshDatabase();
});

after(async () => {
  if (db === undefined) return;
  for (const name of roles) {
    const [exists] = await db.sql`SELECT 1 FROM pg_roles WHERE rolname = ${name}`;
    if (exists === undefined) continue;
    // Revokes this database's grants (and CONNECT on it) so that the role can be dropped.
    await db.sql.unsafe(`DROP OWNED BY ${name}`);
    await db.sql.unsafe(`DROP ROLE ${name}`);
  }
  await db.drop();
});

/** A connection as `name` (the test server may use trust or SCRAM authentication). */
function connectAs(name: string): postgres.Sql {
  const url = new URL(db.url);
  url.username = name;
  url.password = PASSWORD;
  return postgres(url.toString(), { max: 1, onnotice: () => {} });
}

test('creates a LOGIN role that reads every registry table and can write none of them', async () => {
  const result = await ensureGatewayRole(db.sql, { name: role, password: PASSWORD });
  assert.equal(result.created, true);
  assert.equal(result.passwordSet, true);
  const [attributes] = await db.sql<
    {
      rolcanlogin: boolean;
      rolsuper: boolean;
      rolcreaterole: boolean;
      rolcreatedb: boolean;
      password: string;
    }[]
  >`SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolpassword AS password
    FROM pg_authid WHERE rolname = ${role}`;
  assert.deepEqual(
    { ...attributes, password: attributes?.password.slice(0, 19) },
    {
      rolcanlogin: true,
      rolsuper: false,
      rolcreaterole: false,
      rolcreatedb: false,
      password: 'SCRAM-SHA-256$4096:',
    },
  );
  assert.ok(!attributes?.password.includes(PASSWORD));
  assert.deepEqual(
    result.granted.filter((g) => g.startsWith('SELECT')),
    GATEWAY_ROLE_GRANTS.map((g) => `SELECT ON public.${g.table}`),
  );

  const asGateway = connectAs(role);
  try {
    for (const { table } of GATEWAY_ROLE_GRANTS) {
      await asGateway.unsafe(`SELECT count(*) FROM ${table}`);
      // A column of that table: PostgreSQL checks columns before privileges.
      const column = table === 'agent_gateway_schema_version' ? 'version' : 'created_at';
      for (const write of [
        `INSERT INTO ${table} DEFAULT VALUES`,
        `UPDATE ${table} SET ${column} = ${column}`,
        `DELETE FROM ${table}`,
        `TRUNCATE ${table}`,
      ]) {
        await assert.rejects(asGateway.unsafe(write), /permission denied/, write);
      }
    }
    await assert.rejects(asGateway.unsafe('CREATE TABLE public.intruder (x int)'), /permission denied/);
  } finally {
    await asGateway.end();
  }
});

test('budgets: the role calls the budget functions, not their clock-taking variants, and writes no table', async () => {
  const result = await ensureGatewayRole(db.sql, { name: role });
  assert.deepEqual(
    result.granted.filter((g) => g.startsWith('EXECUTE')),
    GATEWAY_ROLE_FUNCTION_GRANTS.map((g) => `EXECUTE ON FUNCTION agent_gateway_ext.${g.signature}`),
  );
  const asGateway = connectAs(role);
  try {
    const [granted] = await asGateway<{ lease_id: string | null; granted: string }[]>`
      SELECT * FROM agent_gateway_ext.budget_lease('gw', 'agent-role', 'upload', 1000, 1000, 0, 86400, 500, 1, 60)`;
    assert.equal(granted?.granted, '500');
    await asGateway`SELECT agent_gateway_ext.budget_sync('gw', '{}'::text[], '{}'::integer[], 15)`;
    // The variant that takes "now" is the owner's: the gateway cannot lease against a clock of its choosing.
    await assert.rejects(
      asGateway`SELECT * FROM agent_gateway_ext.budget_lease_at('gw', 'agent-role', 'upload', 1000, 1000, 0,
        86400, 500, 1, 60, now() + interval '1 year')`,
      /permission denied/,
    );
    for (const write of [
      'UPDATE agent_gateway_ext.budget_buckets SET tokens = 1e12',
      'DELETE FROM agent_gateway_ext.budget_quota_usage',
      "INSERT INTO agent_gateway_ext.budget_tunnels VALUES ('gw', 'x', 0, now())",
      'TRUNCATE agent_gateway_ext.budget_leases',
      'SELECT * FROM agent_gateway_ext.budget_buckets',
    ]) {
      await assert.rejects(asGateway.unsafe(write), /permission denied/, write);
    }
  } finally {
    await asGateway.end();
  }
});

test('running it again changes nothing and keeps the password unless a new one is given', async () => {
  const [before] = await db.sql<
    { p: string }[]
  >`SELECT rolpassword AS p FROM pg_authid WHERE rolname = ${role}`;
  const again = await ensureGatewayRole(db.sql, { name: role });
  assert.equal(again.created, false);
  assert.equal(again.passwordSet, false);
  const [after] = await db.sql<
    { p: string }[]
  >`SELECT rolpassword AS p FROM pg_authid WHERE rolname = ${role}`;
  assert.equal(after?.p, before?.p);
  const first = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM information_schema.role_table_grants WHERE grantee = ${role}`;
  assert.equal(first[0]?.n, GATEWAY_ROLE_GRANTS.length, 'exactly one SELECT per registry table');
});

test('an existing role with administrative attributes or write access to the registry is refused', async () => {
  const superuser = roles[1]!;
  const writer = roles[2]!;
  await db.sql.unsafe(`CREATE ROLE ${superuser} SUPERUSER`);
  await db.sql.unsafe(`CREATE ROLE ${writer} LOGIN`);
  await db.sql.unsafe(`GRANT INSERT ON permission_registry TO ${writer}`);
  await assert.rejects(
    ensureGatewayRole(db.sql, { name: superuser }),
    (err: unknown) => err instanceof GatewayRoleError && /already exists with SUPERUSER/.test(err.message),
  );
  await assert.rejects(
    ensureGatewayRole(db.sql, { name: writer }),
    (err: unknown) =>
      err instanceof GatewayRoleError &&
      /can change the registry \(INSERT on permission_registry\)/.test(err.message),
  );
  const [login] = await db.sql<
    { rolcanlogin: boolean }[]
  >`SELECT rolcanlogin FROM pg_roles WHERE rolname = ${superuser}`;
  assert.equal(login?.rolcanlogin, false, 'a refused role is left as it was');
});

test('bad names and passwords are bad input', async () => {
  for (const name of ['', 'Agent', 'pg_gateway', 'a-b', 'x;drop', '1abc']) {
    await assert.rejects(
      ensureGatewayRole(db.sql, { name }),
      (err: unknown) => err instanceof GatewayRoleError && err.badInput,
      name,
    );
  }
  await assert.rejects(
    ensureGatewayRole(db.sql, { name: role, password: 'short' }),
    (err: unknown) => err instanceof GatewayRoleError && err.badInput && /shorter than 16/.test(err.message),
  );
});
