import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { replaceOnce, runShell, shBlockAfter } from '../helpers/doc-script.js';
import { closedPort } from '../helpers/loopback-servers.js';

/**
 * The README's hand walkthrough ("From an empty database to an allowed tunnel"), run as written by a
 * shell from the clone, against an empty database of its own. Only what must differ on a shared test
 * machine is replaced, each string exactly once: the admin URL and database name, the role name (roles
 * belong to the whole server), and the two fixed ports. The rest (PATH, every command and flag, the
 * config file, the order of the steps) is the README's text.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const README = join(ROOT, 'README.md');
let db: FreshDatabase;
let scratch: string;
const role = `ag_walk_${process.pid}_${randomBytes(3).toString('hex')}`;

before(async () => {
  db = await freshDatabase({ migrate: false });
  scratch = await mkdtemp(join(tmpdir(), 'ag-walkthrough-'));
});

after(async () => {
  if (db !== undefined) {
    const [exists] = await db.sql`SELECT 1 FROM pg_roles WHERE rolname = ${role}`;
    if (exists !== undefined) {
      await db.sql.unsafe(`DROP OWNED BY ${role}`);
      await db.sql.unsafe(`DROP ROLE ${role}`);
    }
    await db.drop();
  }
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

test('the README walkthrough runs as written and its curl gets the page through the gateway', async () => {
  const admin = new URL(db.url);
  const database = admin.pathname.slice(1);
  const gatewayPort = await closedPort();
  const destPort = await closedPort();
  let script = shBlockAfter(
    await readFile(README, 'utf8'),
    'From an empty database to an allowed tunnel, by hand.',
  );
  // The test made the (empty) database already, on whichever server the suite uses.
  script = replaceOnce(script, 'createdb -h 127.0.0.1 -U postgres agent_gateway\n', '');
  script = replaceOnce(script, 'postgres://postgres@127.0.0.1:5432/agent_gateway', db.url);
  script = replaceOnce(
    script,
    'postgres://agent_gateway:$GATEWAY_DB_PASS@127.0.0.1:5432/agent_gateway',
    `postgres://${role}:$GATEWAY_DB_PASS@${admin.host}/${database}`,
  );
  script = replaceOnce(script, '--gateway-role agent_gateway', `--gateway-role ${role}`);
  script = replaceOnce(script, /\b8443\b/g, String(gatewayPort));
  script = replaceOnce(script, /\b8080\b/g, String(destPort));

  const result = await runShell(script, { cwd: ROOT, env: { TMPDIR: scratch } });
  assert.equal(result.code, 0, `walkthrough failed:\n${result.output}`);
  assert.match(result.output, /registry migrated from version 0 to 1/);
  assert.match(result.output, new RegExp(`gateway role ${role}: created`));
  assert.match(
    result.output,
    /checked 1 permission\(s\) \(1 active\), 1 signing key\(s\), 1 scope row\(s\): no problems/,
  );
  assert.match(result.output, /^hello through the gateway$/m, 'the page, fetched through the gateway');
  assert.match(result.output, /"msg":"CONNECT allowed"/);
  assert.match(result.output, new RegExp(`"dest_authority":"127\\.0\\.0\\.1:${destPort}"`));

  // The gateway really ran as the read-only role: the role exists with SELECT only.
  const grants = await db.sql<{ privilege_type: string }[]>`
    SELECT DISTINCT privilege_type FROM information_schema.role_table_grants WHERE grantee = ${role}`;
  assert.deepEqual(
    grants.map((g) => g.privilege_type),
    ['SELECT'],
  );
});
