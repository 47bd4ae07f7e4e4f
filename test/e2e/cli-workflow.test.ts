import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGatewayWithCliPki } from '../helpers/cli-gateway.js';
import { type CliResult, curlThroughGateway, fields, runCli } from '../helpers/cli-runner.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { startHttpServer } from '../helpers/loopback-servers.js';
import { createPrincipal, grantPermission, grantScope } from '../helpers/registry-rows.js';

/**
 * The operator toolkit as an operator uses it: the built CLI against a real PostgreSQL, and the real gateway
 * (a child process) deciding CONNECTs on what the CLI wrote. Windows are relative to the database clock.
 */
describe('CLI end to end: from an empty registry to an allowed tunnel and back', () => {
  let db: FreshDatabase;
  let dir: string;
  let gateway: GatewayProcess;
  const servers: Array<{ port: number; close(): Promise<void> }> = [];
  let dest: string;
  let destUrl: string;
  let env: Record<string, string>;
  const path = (name: string) => join(dir, name);
  const cli = (...args: string[]) => runCli(args, { env });
  /** Signing as org-alice, whose key is encrypted with the passphrase in ALICE_PASSPHRASE. */
  const asAlice = () => [
    ...['--key-id', 'org-alice', '--key', path('principal/org-alice.pem')],
    ...['--passphrase-env', 'ALICE_PASSPHRASE'],
  ];

  /** Runs a command that must succeed and returns its output. */
  async function ok(...args: string[]): Promise<CliResult> {
    const r = await cli(...args);
    assert.equal(r.code, 0, `agent-gateway ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  }

  async function statusOf(permissionId: string): Promise<string> {
    const r = await ok('permission', 'list', '--permission-id', permissionId, '--json');
    const rows = JSON.parse(r.stdout) as Array<{ status: string }>;
    assert.equal(rows.length, 1);
    return rows[0]?.status ?? '';
  }

  const agentTls = (name: string) => ({
    caPath: path('pki/ca.pem'),
    certPath: path(`agents/${name}.pem`),
    keyPath: path(`agents/${name}-key.pem`),
  });

  before(async () => {
    db = await freshDatabase();
    dir = await mkdtemp(join(tmpdir(), 'ag-cli-e2e-'));
    await chmod(dir, 0o755);
    env = { AGENT_GATEWAY_DATABASE_URL: db.url, ALICE_PASSPHRASE: 'correct horse battery staple' };
    const http = await startHttpServer('cli-dest');
    servers.push(http);
    dest = `127.0.0.1:${http.port}`;
    destUrl = `http://${dest}/through-cli-grants`;

    gateway = await startGatewayWithCliPki(ok, dir, db.url);
  });

  after(async () => {
    const code = await gateway?.stop();
    assert.equal(code, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
    for (const s of servers) await s.close();
    await db?.drop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('enrol a principal, grant scope, create an agent, grant a permission: the gateway allows; revoke: denied', async () => {
    const key = await ok(
      'principal',
      'create-key',
      ...['--out', path('principal/org-alice.pem'), '--passphrase-env', 'ALICE_PASSPHRASE'],
    );
    assert.match(key.stdout, /encrypted/);
    assert.doesNotMatch(key.stdout + key.stderr, /correct horse/, 'the passphrase is never printed');
    const registered = await ok('principal', 'register', ...asAlice());
    // Registering from the private key and from the written public key yields the same fingerprint.
    assert.equal(fields(registered.stdout)['key fingerprint'], fields(key.stdout)['key fingerprint']);

    const scope = await ok('scope', 'grant', '--key-id', 'org-alice', '--destination', dest);
    assert.match(fields(scope.stdout)['scope'] ?? '', /granted \(new scope row\)/);

    const agent = await ok('agent', 'create', '--identity', 'agent-alpha', '--out-dir', path('agents'));
    assert.equal(fields(agent.stdout)['identity'], 'agent-alpha');
    assert.match(fields(agent.stdout)['spki fingerprint'] ?? '', /^sha256:[0-9a-f]{64}$/);

    const granted = await ok(
      'permission',
      'grant',
      ...asAlice(),
      ...[
        '--agent-cert',
        path('agents/agent-alpha.pem'),
        '--destination',
        dest,
        '--permission-id',
        'perm-alpha',
      ],
    );
    assert.equal(fields(granted.stdout)['agent key'], fields(agent.stdout)['spki fingerprint']);
    assert.equal(await statusOf('perm-alpha'), 'active');

    const allowed = await curlThroughGateway(gateway.port, agentTls('agent-alpha'), destUrl);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /^hello from cli-dest \/through-cli-grants\n/);
    assert.match(allowed.stdout, /\n200$/);
    const allowLog = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT allowed' && l['permission_id'] === 'perm-alpha',
    );
    assert.equal(allowLog['signing_key_id'], 'org-alice');

    await ok('permission', 'revoke', '--permission-id', 'perm-alpha');
    assert.equal(await statusOf('perm-alpha'), 'revoked');
    const denied = await curlThroughGateway(gateway.port, agentTls('agent-alpha'), destUrl);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stdout, /403$/);
  });

  test('re-granting a scope keeps the permissions issued under it valid', async () => {
    await ok('agent', 'create', '--identity', 'agent-gamma', '--out-dir', path('agents'));
    await ok('principal', 'create-key', '--out', path('principal/org-carol.pem'), '--unencrypted');
    await ok(
      'principal',
      'register',
      '--key-id',
      'org-carol',
      '--public-key',
      path('principal/org-carol.pub.pem'),
    );
    const carolScope = (...window: string[]) =>
      ok('scope', 'grant', '--key-id', 'org-carol', '--destination', dest, ...window);
    await carolScope('--valid-for', '10 days');
    const grant = (id: string, validFor: string) =>
      cli(
        'permission',
        'grant',
        ...['--key-id', 'org-carol', '--key', path('principal/org-carol.pem')],
        ...['--agent-cert', path('agents/agent-gamma.pem'), '--destination', dest],
        ...['--permission-id', id, '--valid-for', validFor],
      );
    assert.equal((await grant('perm-gamma-1', '9 days')).code, 0);

    // The same grant again, but shorter: the existing row already covers it and keeps its full window.
    const shorter = await carolScope('--valid-for', '1 day');
    assert.match(fields(shorter.stdout)['scope'] ?? '', /already covered/);
    assert.equal(await statusOf('perm-gamma-1'), 'active');
    const stillAllowed = await curlThroughGateway(gateway.port, agentTls('agent-gamma'), destUrl);
    assert.match(stillAllowed.stdout, /\n200$/, stillAllowed.stderr);

    // An overlapping later window extends the row to the union, so a permission spanning both is grantable.
    assert.equal((await grant('perm-gamma-2', '30 days')).code, 1, 'not covered before the extension');
    const extended = await carolScope('--not-before', '+5 days', '--not-after', '+60 days');
    assert.match(fields(extended.stdout)['scope'] ?? '', /extended/);
    assert.equal((await grant('perm-gamma-2', '30 days')).code, 0);
    assert.equal(await statusOf('perm-gamma-1'), 'active');
    assert.equal(await statusOf('perm-gamma-2'), 'active');
    const [count] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM principal_key_permissions WHERE signing_key_id = 'org-carol'`;
    assert.equal(count?.n, 1, 'one row, extended in place');
  });

  test('granting outside the signer scope is refused and writes nothing', async () => {
    await ok('principal', 'create-key', '--out', path('principal/org-dave.pem'), '--unencrypted');
    await ok('principal', 'register', '--key-id', 'org-dave', '--key', path('principal/org-dave.pem'));
    await ok('scope', 'grant', '--key-id', 'org-dave', '--destination', dest, '--valid-for', '2 days');
    await ok('agent', 'create', '--identity', 'agent-delta', '--out-dir', path('agents'));
    const grant = (...extra: string[]) =>
      cli(
        'permission',
        'grant',
        ...['--key-id', 'org-dave', '--key', path('principal/org-dave.pem')],
        ...['--agent-cert', path('agents/agent-delta.pem'), ...extra],
      );

    const otherDestination = await grant('--destination', 'api.example.com');
    assert.equal(otherDestination.code, 1);
    assert.match(otherDestination.stderr, /holds no delegation scope for api\.example\.com:443/);

    const tooLong = await grant('--destination', dest, '--valid-for', '3 days');
    assert.equal(tooLong.code, 1);
    assert.match(tooLong.stderr, /covers the whole permission window/);

    await ok('principal', 'revoke', '--key-id', 'org-dave');
    const revokedSigner = await grant('--destination', dest, '--valid-for', '1 day');
    assert.equal(revokedSigner.code, 1);
    assert.match(revokedSigner.stderr, /signing key "org-dave" was revoked/);

    const [count] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM permission_registry WHERE signing_key_id = 'org-dave'`;
    assert.equal(count?.n, 0);
  });

  test('re-registering a key does not clear its revocation', async () => {
    await ok('principal', 'create-key', '--out', path('principal/org-erin.pem'), '--unencrypted');
    const register = (...extra: string[]) =>
      cli('principal', 'register', '--key-id', 'org-erin', '--key', path('principal/org-erin.pem'), ...extra);
    assert.equal((await register()).code, 0);
    await ok('principal', 'revoke', '--key-id', 'org-erin');
    const [before] = await db.sql<{ revoked_at: Date }[]>`
      SELECT revoked_at FROM principal_signing_keys WHERE key_id = 'org-erin'`;

    const again = await register();
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already registered: pass --replace/);
    const replaced = await register('--replace', '--valid-for', '90 days');
    assert.equal(replaced.code, 1);
    assert.match(replaced.stderr, /was revoked at .* and stays revoked/);

    const [after] = await db.sql<{ revoked_at: Date }[]>`
      SELECT revoked_at FROM principal_signing_keys WHERE key_id = 'org-erin'`;
    assert.deepEqual(after?.revoked_at, before?.revoked_at);
    const list = JSON.parse((await ok('principal', 'list', '--json')).stdout) as Array<{
      keyId: string;
      status: string;
    }>;
    assert.equal(list.find((k) => k.keyId === 'org-erin')?.status, 'revoked');
    const revokeAgain = await ok('principal', 'revoke', '--key-id', 'org-erin');
    assert.match(revokeAgain.stdout, /already revoked/);
  });

  test('registry verify finds a row edited with SQL, even once it is revoked', async () => {
    await ok('agent', 'create', '--identity', 'agent-eve', '--out-dir', path('agents'));
    await ok('scope', 'grant', '--key-id', 'org-alice', '--destination', 'api.example.com');
    await ok(
      'permission',
      'grant',
      ...asAlice(),
      ...[
        '--agent-cert',
        path('agents/agent-eve.pem'),
        '--destination',
        'API.Example.com',
        '--permission-id',
        'perm-eve',
      ],
    );
    const clean = await cli('registry', 'verify');
    assert.equal(clean.code, 0, clean.stdout + clean.stderr);
    assert.match(clean.stdout, /no problems/);

    try {
      // What an attacker with write access to the table would do: stretch the window by a day.
      await db.sql`UPDATE permission_registry SET not_after = not_after + interval '1 day' WHERE permission_id = 'perm-eve'`;
      const tampered = await cli('registry', 'verify');
      assert.equal(tampered.code, 1);
      assert.match(tampered.stdout, /problem: permission_registry "perm-eve": bad-signature/);
      assert.match(tampered.stdout, /1 problem\(s\)/);
      assert.equal(await statusOf('perm-eve'), 'bad-signature');

      await ok('permission', 'revoke', '--permission-id', 'perm-eve');
      const revoked = await cli('registry', 'verify', '--json');
      assert.equal(revoked.code, 1, 'tampering is a problem whether or not the row is revoked');
      const report = JSON.parse(revoked.stdout) as { problems: Array<{ id: string; problem: string }> };
      assert.deepEqual(
        report.problems.map((p) => [p.id, p.problem]),
        [['perm-eve', 'bad-signature']],
      );
    } finally {
      await db.sql`DELETE FROM permission_registry WHERE permission_id = 'perm-eve'`;
    }
    assert.equal((await cli('registry', 'verify')).code, 0, 'revoked and expired rows are not problems');
  });

  test('registry verify says what it cannot see: rows INSERTed or un-revoked with SQL pass, and they allow', async () => {
    // The limits of the registry contract (README, "Trust model"): the database is the trust root for keys,
    // scopes and revocations. verify must say so rather than claim to find every edit.
    await ok('agent', 'create', '--identity', 'agent-mallory', '--out-dir', path('agents'));
    const agentSpki = new X509Certificate(await readFile(path('agents/agent-mallory.pem'))).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    try {
      // A rogue signing key, its scope and a permission it signed itself, all written with SQL.
      const rogue = await createPrincipal(db.sql, 'org-rogue');
      await grantScope(db.sql, 'org-rogue', dest);
      await grantPermission(db.sql, {
        permissionId: 'perm-rogue',
        principal: rogue,
        identity: 'agent-mallory',
        agentSpki,
        destination: dest,
      });
      const rogueAllowed = await curlThroughGateway(gateway.port, agentTls('agent-mallory'), destUrl);
      assert.match(rogueAllowed.stdout, /\n200$/, rogueAllowed.stderr);

      // Revoked with the CLI, then revoked_at cleared with SQL: active again.
      await ok('permission', 'revoke', '--permission-id', 'perm-rogue');
      assert.match(
        (await curlThroughGateway(gateway.port, agentTls('agent-mallory'), destUrl)).stdout,
        /403$/,
      );
      await db.sql`UPDATE permission_registry SET revoked_at = NULL WHERE permission_id = 'perm-rogue'`;
      const unrevoked = await curlThroughGateway(gateway.port, agentTls('agent-mallory'), destUrl);
      assert.match(unrevoked.stdout, /\n200$/, unrevoked.stderr);

      const report = await cli('registry', 'verify');
      assert.equal(report.code, 0, 'none of this is detectable from the rows');
      assert.match(report.stdout, /no problems\n/);
      assert.match(
        report.stdout,
        /not detectable here: the database is the trust root for keys, scopes and revocations/,
      );
      assert.match(report.stdout, /INSERTed with SQL: it is as valid as one the CLI wrote/);
      assert.match(report.stdout, /revoked_at set back to NULL/);
      const json = JSON.parse((await cli('registry', 'verify', '--json')).stdout) as {
        problems: unknown[];
        notDetectable: string[];
      };
      assert.deepEqual(json.problems, []);
      assert.equal(json.notDetectable.length, 3);
      assert.ok(json.notDetectable.some((line) => /scope row INSERTed or widened with SQL/.test(line)));
    } finally {
      await db.sql`DELETE FROM permission_registry WHERE signing_key_id = 'org-rogue'`;
      await db.sql`DELETE FROM principal_key_permissions WHERE signing_key_id = 'org-rogue'`;
      await db.sql`DELETE FROM principal_signing_keys WHERE key_id = 'org-rogue'`;
    }
  });

  test('bad input: clear messages, exit 2 for arguments and files, 1 for refusals', async () => {
    const cases: Array<{ args: string[]; env?: Record<string, string>; code: number; message: RegExp }> = [
      {
        args: ['scope', 'grant', '--key-id', 'org-alice', '--destination', 'api.example.com:443:extra'],
        code: 2,
        message: /destination "api\.example\.com:443:extra"/,
      },
      {
        args: ['permission', 'grant', '--key-id', 'org-alice', '--key', path('nope.pem')].concat([
          '--agent-cert',
          path('agents/agent-alpha.pem'),
          '--destination',
          dest,
        ]),
        code: 2,
        message: /--key: cannot read ".*nope\.pem": no such file/,
      },
      {
        args: [
          'principal',
          'register',
          '--key-id',
          'org-zed',
          '--key',
          path('principal/org-alice.pem'),
        ].concat(['--passphrase-env', 'WRONG']),
        env: { WRONG: 'not the passphrase' },
        code: 2,
        message: /wrong passphrase/,
      },
      {
        args: ['principal', 'register', '--key-id', 'org-zed', '--key', path('principal/org-alice.pem')],
        code: 2,
        message: /is encrypted .* pass --passphrase-env VAR/,
      },
      {
        args: ['scope', 'grant', '--key-id', 'nobody', '--destination', dest],
        code: 1,
        message: /signing key "nobody" is not registered/,
      },
      {
        args: ['scope', 'grant', '--key-id', 'org-alice', '--destination', dest, '--not-after', 'someday'],
        code: 2,
        message: /--not-after "someday" is not a time/,
      },
      {
        args: ['agent', 'create', '--identity', '', '--out-dir', dir],
        code: 2,
        message: /must not be empty/,
      },
      {
        args: ['agent', 'create', '--identity', 'two\nlines', '--out-dir', dir],
        code: 2,
        message: /contains a newline/,
      },
      {
        args: ['permission', 'list'],
        env: { AGENT_GATEWAY_DATABASE_URL: '' },
        code: 2,
        message: /no database URL: pass --database-url/,
      },
      { args: ['scope', 'grant', '--key-id', 'org-alice'], code: 2, message: /--destination/ },
    ];
    for (const c of cases) {
      const r = await runCli(c.args, { env: { ...env, ...c.env } });
      assert.equal(r.code, c.code, `${c.args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, c.message, c.args.join(' '));
    }
  });
});
