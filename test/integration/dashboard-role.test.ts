import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import postgres from 'postgres';
import {
  DASHBOARD_ROLE,
  ensureGatewayRole,
  ensureRole,
  GatewayRoleError,
} from '../../src/registry/gateway-role.js';
import { revokeDirectly, revokedAt, revokeThroughExtension } from '../../src/registry/revocation.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { createPrincipal, grantPermission, grantScope } from '../helpers/registry-rows.js';

/**
 * `migrate --dashboard-role`: the dashboard's role reads the registry and revokes through the extension's
 * functions, exactly as the CLI revokes, and can do nothing else: no INSERT, UPDATE or DELETE on a registry
 * table, so it can never un-revoke; the gateway's role can never revoke. Roles are cluster-wide: unique
 * names, dropped at the end.
 */
let db: FreshDatabase;
const suffix = `${process.pid}_${randomBytes(4).toString('hex')}`;
const dashboard = `ag_dash_${suffix}`;
const gateway = `ag_gw_${suffix}`;
const columnWriter = `ag_colw_${suffix}`;
const roles = [dashboard, gateway, columnWriter];
const PASSWORD = 'a-test-password-of-some-length';

before(async () => {
  db = await freshDatabase();
});

after(async () => {
  if (db === undefined) return;
  for (const name of roles) {
    const [exists] = await db.sql`SELECT 1 FROM pg_roles WHERE rolname = ${name}`;
    if (exists === undefined) continue;
    await db.sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${name}`;
    await db.sql.unsafe(`DROP OWNED BY ${name}`);
    await db.sql.unsafe(`DROP ROLE ${name}`);
  }
  await db.drop();
});

function connectAs(name: string): postgres.Sql {
  const url = new URL(db.url);
  url.username = name;
  url.password = PASSWORD;
  return postgres(url.toString(), { max: 1, onnotice: () => {} });
}

async function permission(n: string): Promise<string> {
  const principal = await createPrincipal(db.sql, `org-${n}-${suffix}`);
  await grantScope(db.sql, principal.keyId, 'api.example.com:443');
  const permissionId = `perm-${n}-${suffix}`;
  await grantPermission(db.sql, {
    permissionId,
    principal,
    identity: `agent-${n}`,
    agentSpki: Buffer.from([0x30, 0x59, 0x01]),
    destination: 'api.example.com:443',
  });
  return permissionId;
}

test('the dashboard role reads every registry table, runs the three revocation functions, and writes nothing', async () => {
  const result = await ensureRole(db.sql, DASHBOARD_ROLE, { name: dashboard, password: PASSWORD });
  assert.equal(result.created, true);
  assert.deepEqual(
    result.granted.filter((g) => g.startsWith('EXECUTE')),
    [
      'EXECUTE ON FUNCTION agent_gateway_ext.revoke_permission(text)',
      'EXECUTE ON FUNCTION agent_gateway_ext.revoke_signing_key(text)',
      'EXECUTE ON FUNCTION agent_gateway_ext.revoke_scope(bigint)',
    ],
  );
  const id = await permission('ro');
  const as = connectAs(dashboard);
  try {
    for (const table of ['principal_signing_keys', 'principal_key_permissions', 'permission_registry']) {
      await as.unsafe(`SELECT count(*) FROM ${table}`);
      for (const write of [
        `UPDATE ${table} SET revoked_at = NULL`,
        `UPDATE ${table} SET revoked_at = now()`,
        `INSERT INTO ${table} DEFAULT VALUES`,
        `DELETE FROM ${table}`,
        `TRUNCATE ${table}`,
      ]) {
        await assert.rejects(as.unsafe(write), /permission denied/, write);
      }
    }
    await as`SELECT version FROM agent_gateway_ext.schema_version`;
    // The functions take only an id: there is no way to pass a time, or NULL, through them.
    assert.equal(await revokeThroughExtension(as, 'permission', id), true);
    assert.equal(await revokeThroughExtension(as, 'permission', id), false, 'already revoked: nothing to do');
    assert.equal(await revokeThroughExtension(as, 'permission', 'no-such'), false);
    assert.equal(await revokeThroughExtension(as, 'scope', 'not-a-number'), false);
    assert.match(String(await revokedAt(as, 'permission', id)), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.equal(await revokedAt(as, 'permission', 'no-such'), undefined);
  } finally {
    await as.end();
  }
});

test('the functions leave the same row as the CLI’s UPDATE, and announce it like any change', async () => {
  const viaCli = await permission('cli');
  const viaDashboard = await permission('ui');
  const notified: string[] = [];
  const listener = postgres(db.url, { max: 1, onnotice: () => {} });
  await listener.listen('agent_gateway_registry_changed', (payload) => notified.push(payload));
  const as = connectAs(dashboard);
  try {
    assert.equal(await revokeDirectly(db.sql, 'permission', viaCli), true);
    assert.equal(await revokeThroughExtension(as, 'permission', viaDashboard), true);
    const rows = await db.sql<{ id: string; revoked: boolean; touched: boolean }[]>`
      SELECT permission_id AS id, revoked_at IS NOT NULL AS revoked, updated_at = revoked_at AS touched
      FROM permission_registry WHERE permission_id IN (${viaCli}, ${viaDashboard}) ORDER BY permission_id`;
    assert.deepEqual(
      rows.map((r) => [r.revoked, r.touched]),
      [
        [true, true],
        [true, true],
      ],
    );
    for (let i = 0; i < 100 && notified.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(notified, ['permission_registry UPDATE', 'permission_registry UPDATE']);
    // A signer and a scope, the same way.
    const principal = await createPrincipal(db.sql, `org-s-${suffix}`);
    await grantScope(db.sql, principal.keyId, 'x.example:443');
    const [scope] = await db.sql<{ id: string }[]>`
      SELECT id::text AS id FROM principal_key_permissions WHERE signing_key_id = ${principal.keyId}`;
    assert.equal(await revokeThroughExtension(as, 'scope', scope!.id), true);
    assert.equal(await revokeThroughExtension(as, 'signing key', principal.keyId), true);
    assert.equal(await revokeThroughExtension(as, 'signing key', principal.keyId), false);
  } finally {
    await as.end();
    await listener.end();
  }
});

test('a temporary table of the caller’s cannot stand in for the registry inside the functions', async () => {
  const id = await permission('temp');
  const as = connectAs(dashboard);
  try {
    await as.begin(async (tx) => {
      await tx`CREATE TEMP TABLE permission_registry (permission_id text, revoked_at timestamptz, updated_at timestamptz)`;
      await tx`INSERT INTO permission_registry VALUES (${id}, NULL, NULL)`;
      assert.equal(await revokeThroughExtension(tx as unknown as postgres.Sql, 'permission', id), true);
      const [fake] = await tx`SELECT revoked_at FROM pg_temp.permission_registry`;
      assert.equal(fake?.['revoked_at'], null, 'the temporary table was not touched');
    });
    assert.notEqual(await revokedAt(db.sql, 'permission', id), null, 'the real row was revoked');
  } finally {
    await as.end();
  }
});

test('the gateway role cannot revoke, and no role that can write a column of the registry passes the check', async () => {
  await ensureGatewayRole(db.sql, { name: gateway, password: PASSWORD });
  const id = await permission('gw');
  const as = connectAs(gateway);
  try {
    // No USAGE on the extension's schema, and no EXECUTE on its functions.
    await assert.rejects(
      revokeThroughExtension(as, 'permission', id),
      /permission denied for (schema|function)/,
    );
  } finally {
    await as.end();
  }
  // A role given a column grant (enough to clear revoked_at) is refused for either kind of role.
  await db.sql.unsafe(`CREATE ROLE ${columnWriter} LOGIN`);
  await db.sql.unsafe(`GRANT UPDATE (revoked_at) ON permission_registry TO ${columnWriter}`);
  for (const ensure of [
    () => ensureGatewayRole(db.sql, { name: columnWriter }),
    () => ensureRole(db.sql, DASHBOARD_ROLE, { name: columnWriter }),
  ]) {
    await assert.rejects(
      ensure(),
      (err: unknown) =>
        err instanceof GatewayRoleError && /UPDATE on columns of permission_registry/.test(err.message),
    );
  }
  // And a role that may run the revocation functions is not made the gateway's.
  await assert.rejects(
    ensureGatewayRole(db.sql, { name: dashboard }),
    (err: unknown) =>
      err instanceof GatewayRoleError &&
      /EXECUTE on agent_gateway_ext\.revoke_permission\(text\)/.test(err.message),
  );
});
