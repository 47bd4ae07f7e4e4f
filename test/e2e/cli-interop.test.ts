import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type CliResult, run, runCli } from '../helpers/cli-runner.js';
import { canonicalText, readSignedRow, type SignedFields } from '../helpers/contract-bytes.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';

/**
 * Interop with the tools operators already have: a permission signed by the CLI verifies with
 * `openssl dgst -sha256 -verify`, and a permission signed with `openssl dgst -sha256 -sign` (the old bash
 * scripts' way) is valid for `permission list` and `registry verify`. The signed bytes are rebuilt from
 * the interop contract's text, independently of src/registry/canonical.ts (helpers/contract-bytes.ts).
 */

let db: FreshDatabase;
let dir: string;
let env: Record<string, string>;
const path = (name: string) => join(dir, name);
const DEST = 'api.example.com:443';

before(async () => {
  db = await freshDatabase();
  dir = await mkdtemp(join(tmpdir(), 'ag-cli-interop-'));
  await chmod(dir, 0o755);
  env = { AGENT_GATEWAY_DATABASE_URL: db.url };
});

after(async () => {
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function ok(args: string[]): Promise<CliResult> {
  const r = await runCli(args, { env });
  assert.equal(r.code, 0, `agent-gateway ${args.join(' ')}\n${r.stdout}${r.stderr}`);
  return r;
}

async function openssl(...args: string[]): Promise<CliResult> {
  return run('openssl', args);
}

/** The agent key as openssl extracts it: `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER`. */
async function opensslSpki(certPath: string): Promise<Buffer> {
  const pub = `${certPath}.openssl-pub.pem`;
  const der = `${certPath}.openssl-spki.der`;
  assert.equal((await openssl('x509', '-in', certPath, '-pubkey', '-noout', '-out', pub)).code, 0);
  assert.equal((await openssl('pkey', '-pubin', '-in', pub, '-outform', 'DER', '-out', der)).code, 0);
  return readFile(der);
}

test('a permission signed by the CLI verifies with openssl dgst -sha256 -verify', async () => {
  await ok(['principal', 'create-key', '--out', path('cli-principal.pem'), '--unencrypted']);
  await ok(['principal', 'register', '--key-id', 'org-cli', '--public-key', path('cli-principal.pub.pem')]);
  await ok(['scope', 'grant', '--key-id', 'org-cli', '--destination', DEST]);
  await ok(['agent', 'create', '--identity', 'agent-interop', '--out-dir', path('agents')]);
  await ok([
    'permission',
    'grant',
    ...[
      '--key-id',
      'org-cli',
      '--key',
      path('cli-principal.pem'),
      '--agent-cert',
      path('agents/agent-interop.pem'),
    ],
    ...['--destination', 'API.EXAMPLE.COM', '--permission-id', 'perm-cli-signed'],
  ]);

  const row = await readSignedRow(db.sql, 'perm-cli-signed');
  assert.ok(row);
  assert.equal(row.destination, DEST, 'stored normalized');
  assert.deepEqual(
    row.spki,
    await opensslSpki(path('agents/agent-interop.pem')),
    'the exact SPKI openssl sees',
  );

  await writeFile(path('signed.txt'), canonicalText(row));
  await writeFile(path('signature.der'), row.signature);
  const verified = await openssl(
    ...['dgst', '-sha256', '-verify', path('cli-principal.pub.pem')],
    ...['-signature', path('signature.der'), path('signed.txt')],
  );
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  assert.match(verified.stdout, /Verified OK/);

  // The same signature over bytes that differ in one field does not verify: the check above is meaningful.
  await writeFile(path('forged.txt'), canonicalText({ ...row, destination: 'evil.example.com:443' }));
  const forged = await openssl(
    ...['dgst', '-sha256', '-verify', path('cli-principal.pub.pem')],
    ...['-signature', path('signature.der'), path('forged.txt')],
  );
  assert.notEqual(forged.code, 0);
});

test('a permission signed with openssl is valid for permission list and registry verify', async () => {
  // The principal's key made and exported by openssl, registered by the CLI from openssl's PEM.
  assert.equal(
    (
      await openssl(
        'genpkey',
        '-algorithm',
        'EC',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-out',
        path('ossl.pem'),
      )
    ).code,
    0,
  );
  assert.equal(
    (await openssl('pkey', '-in', path('ossl.pem'), '-pubout', '-out', path('ossl.pub.pem'))).code,
    0,
  );
  await ok(['principal', 'register', '--key-id', 'org-openssl', '--public-key', path('ossl.pub.pem')]);
  await ok(['scope', 'grant', '--key-id', 'org-openssl', '--destination', DEST, '--not-before', '-1 day']);
  await ok(['agent', 'create', '--identity', 'agent-openssl', '--out-dir', path('agents')]);
  const spki = await opensslSpki(path('agents/agent-openssl.pem'));

  // Times with microseconds, from the database clock, exactly as the contract renders them.
  const [window] = await db.sql<{ nb: string; na: string }[]>`
    SELECT to_char((now() - interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS nb,
           to_char((now() + interval '7 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS na`;
  assert.ok(window);
  const row: SignedFields = {
    permission_id: 'perm-openssl-signed',
    signing_key_id: 'org-openssl',
    subject_identity: 'agent-openssl',
    spki,
    destination: DEST,
    nb: window.nb,
    na: window.na,
  };
  await writeFile(path('to-sign.txt'), canonicalText(row));
  const signed = await openssl(
    'dgst',
    '-sha256',
    '-sign',
    path('ossl.pem'),
    '-out',
    path('ossl-sig.der'),
    path('to-sign.txt'),
  );
  assert.equal(signed.code, 0, signed.stderr);
  const signature = await readFile(path('ossl-sig.der'));
  await db.sql`
    INSERT INTO permission_registry (permission_id, signing_key_id, subject_identity, subject_public_key_spki_der,
      destination, not_before, not_after, signature)
    VALUES (${row.permission_id}, ${row.signing_key_id}, ${row.subject_identity}, ${spki}, ${DEST},
      ${window.nb}::text::timestamptz, ${window.na}::text::timestamptz, ${signature})`;

  const listed = await ok(['permission', 'list', '--permission-id', 'perm-openssl-signed', '--json']);
  const [status] = JSON.parse(listed.stdout) as Array<{ status: string; problem: string | null }>;
  assert.deepEqual({ status: status?.status, problem: status?.problem }, { status: 'active', problem: null });

  const verify = await runCli(['registry', 'verify'], { env });
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(
    verify.stdout,
    /checked 2 permission\(s\) \(2 active\), 2 signing key\(s\), 2 scope row\(s\): no problems/,
  );
});
