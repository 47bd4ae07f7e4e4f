import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGatewayWithCliPki } from '../helpers/cli-gateway.js';
import { type CliResult, curlThroughGateway, fields, run, runCli } from '../helpers/cli-runner.js';
import { canonicalText, readSignedRow } from '../helpers/contract-bytes.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { startHttpServer } from '../helpers/loopback-servers.js';
import { HARDWARE_HELD, privateKeyFiles, type SoftHsm, startSoftHsm } from '../helpers/softhsm.js';

/**
 * A principal whose signing key lives in a PKCS#11 token (SoftHSM2, its own token directory): generated
 * there by the CLI, registered from the token, signing permissions there, and the real gateway allowing a
 * tunnel on such a permission. The key's value is never anywhere but inside the token.
 */
describe('principal signing keys in a PKCS#11 token', () => {
  const ORG_PIN = '314159-org';
  const KEY = 'pkcs11:token=org-keys;object=org-alice';
  let db: FreshDatabase;
  let dir: string;
  let hsm: SoftHsm;
  let gateway: GatewayProcess;
  let http: { port: number; close(): Promise<void> };
  let env: Record<string, string>;
  const path = (name: string) => join(dir, name);
  const cli = (...args: string[]) => runCli(args, { env });
  const outputs: CliResult[] = [];

  async function ok(...args: string[]): Promise<CliResult> {
    const r = await cli(...args);
    outputs.push(r);
    assert.equal(r.code, 0, `agent-gateway ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  }

  /** A command that must fail with exit 2 (run with `extraEnv` over the test's env); its stderr. */
  async function usage(extraEnv: Record<string, string>, ...args: string[]): Promise<string> {
    const r = await runCli(args, { env: { ...env, ...extraEnv } });
    outputs.push(r);
    assert.equal(
      r.code,
      2,
      `agent-gateway ${args.join(' ')} should exit 2\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
    );
    return r.stderr;
  }

  const grant = (key: string, ...extra: string[]) => [
    'permission',
    'grant',
    ...['--key-id', 'org-alice', '--key', key, '--pin-env', 'ORG_PIN'],
    ...['--agent-cert', path('agents/agent-alpha.pem'), '--destination', `127.0.0.1:${http.port}`],
    ...extra,
  ];

  before(async () => {
    db = await freshDatabase();
    dir = await mkdtemp(join(tmpdir(), 'ag-hsm-principal-'));
    await chmod(dir, 0o755);
    hsm = await startSoftHsm();
    await hsm.initToken('org-keys', ORG_PIN);
    env = { AGENT_GATEWAY_DATABASE_URL: db.url, ORG_PIN, ...hsm.env };
    http = await startHttpServer('hsm-dest');
    gateway = await startGatewayWithCliPki(ok, dir, db.url);
    await ok('agent', 'create', '--identity', 'agent-alpha', '--out-dir', path('agents'));
  });

  after(async () => {
    const code = await gateway?.stop();
    await http?.close();
    await db?.drop();
    await hsm?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
    assert.equal(code, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  test('a key generated in the token signs a permission that the gateway accepts', async () => {
    const created = await ok(
      'principal',
      'create-key',
      ...['--out', KEY, '--public-out', path('keys/org-alice.pub.pem'), '--pin-env', 'ORG_PIN'],
    );
    assert.match(
      fields(created.stdout)['private key'] ?? '',
      /^pkcs11:token=org-keys;serial=[0-9a-f]+;object=org-alice;id=/,
    );
    const registered = await ok(
      'principal',
      'register',
      '--key-id',
      'org-alice',
      '--key',
      KEY,
      '--pin-env',
      'ORG_PIN',
    );
    assert.equal(fields(registered.stdout)['key fingerprint'], fields(created.stdout)['key fingerprint']);
    await ok('scope', 'grant', '--key-id', 'org-alice', '--destination', `127.0.0.1:${http.port}`);
    await ok(...grant(KEY, '--permission-id', 'perm-token'));

    const verified = await ok('registry', 'verify');
    assert.match(verified.stdout, /1 active.*no problems/);

    // The stored signature is the DER openssl verifies, over the bytes the contract defines.
    const row = await readSignedRow(db.sql, 'perm-token');
    assert.ok(row);
    assert.equal(row.signature[0], 0x30, "DER SEQUENCE, not the token's raw r||s");
    await writeFile(path('signed.txt'), canonicalText(row));
    await writeFile(path('signature.der'), row.signature);
    const openssl = await run('openssl', [
      ...['dgst', '-sha256', '-verify', path('keys/org-alice.pub.pem')],
      ...['-signature', path('signature.der'), path('signed.txt')],
    ]);
    assert.match(openssl.stdout, /Verified OK/, openssl.stderr);

    const through = await curlThroughGateway(
      gateway.port,
      {
        caPath: path('pki/ca.pem'),
        certPath: path('agents/agent-alpha.pem'),
        keyPath: path('agents/agent-alpha-key.pem'),
      },
      `http://127.0.0.1:${http.port}/signed-in-a-token`,
    );
    assert.equal(through.code, 0, through.stderr);
    assert.match(through.stdout, /^hello from hsm-dest \/signed-in-a-token\n/);
    assert.match(through.stdout, /\n200$/);
    const allowed = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT allowed' && l['permission_id'] === 'perm-token',
    );
    assert.equal(allowed['signing_key_id'], 'org-alice');
  });

  test('a wrong PIN is a clear error, exit 2, and nothing is written', async () => {
    const stderr = await usage({ ORG_PIN: '000000' }, ...grant(KEY, '--permission-id', 'perm-wrong-pin'));
    assert.match(
      stderr,
      /--key: logging in to token "org-keys" .* for pkcs11:token=org-keys;object=org-alice failed \(CKR_PIN_INCORRECT\)/,
    );
    assert.match(stderr, /check the variable named by --pin-env/);
    assert.match(stderr, /\[PKCS11_PIN_INCORRECT\]/);
    const [count] = await db.sql<{ n: number }[]>`
      SELECT count(*)::int AS n FROM permission_registry WHERE permission_id = 'perm-wrong-pin'`;
    assert.equal(count?.n, 0);
  });

  test('a missing token or key object is named by its URI, exit 2', async () => {
    const noToken = await usage({}, ...grant('pkcs11:token=no-such-token;object=org-alice'));
    assert.match(noToken, /no token matches pkcs11:token=no-such-token;object=org-alice/);
    assert.match(noToken, /has token "org-keys"/, 'lists the tokens that are there');
    assert.match(noToken, /\[PKCS11_TOKEN_NOT_FOUND\]/);
    const noObject = await usage({}, ...grant('pkcs11:token=org-keys;object=org-nobody'));
    assert.match(noObject, /holds no private key matching pkcs11:token=org-keys;object=org-nobody/);
    assert.match(noObject, /\[PKCS11_OBJECT_NOT_FOUND\]/);
    const register = await usage(
      {},
      ...[
        'principal',
        'register',
        '--key-id',
        'org-nobody',
        '--key',
        'pkcs11:token=org-keys;object=org-nobody',
      ],
      ...['--pin-env', 'ORG_PIN'],
    );
    assert.match(register, /pkcs11:token=org-keys;object=org-nobody/);
  });

  test('references and settings that cannot work are refused before the token is touched', async () => {
    const inUri = await usage({}, ...grant(`${KEY}?pin-value=${ORG_PIN}`));
    assert.match(inUri, /pin-value is refused: a PIN in a URI is visible in the process list/);
    const noModule = await usage({ AGENT_GATEWAY_PKCS11_MODULE: '' }, ...grant(KEY));
    assert.match(
      noModule,
      /needs its PKCS#11 module: pass --pkcs11-module PATH or set AGENT_GATEWAY_PKCS11_MODULE/,
    );
    const badModule = await usage({}, ...grant(KEY, '--pkcs11-module', path('no-module.so')));
    assert.match(badModule, /no-module\.so" does not exist .*\[PKCS11_MODULE_MISSING\]/);
    // No --pin-env and no terminal to ask on (the runner has no TTY).
    const noPin = await usage({}, ...grant(KEY).filter((a) => a !== '--pin-env' && a !== 'ORG_PIN'));
    assert.match(noPin, /no PIN for token "org-keys" and no terminal to ask on: pass --pin-env VAR/);
    const exists = await usage(
      {},
      ...[
        'principal',
        'create-key',
        '--out',
        KEY,
        '--public-out',
        path('keys/again.pub.pem'),
        '--pin-env',
        'ORG_PIN',
      ],
    );
    assert.match(
      exists,
      /already holds an object named like pkcs11:token=org-keys;object=org-alice.*\[PKCS11_OBJECT_EXISTS\]/,
    );
    const noPublicOut = await usage(
      {},
      'principal',
      'create-key',
      '--out',
      'pkcs11:token=org-keys;object=x',
      '--pin-env',
      'ORG_PIN',
    );
    assert.match(noPublicOut, /needs --public-out FILE/);
  });

  test('a CA key generated in the token issues certificates that openssl verifies', async () => {
    const ca = await ok(
      ...['ca', 'create', '--out-dir', path('token-ca'), '--key', 'pkcs11:token=org-keys;object=gateway-ca'],
      ...['--pin-env', 'ORG_PIN'],
    );
    assert.match(
      fields(ca.stdout)['private key'] ?? '',
      /^pkcs11:token=org-keys;serial=\w+;object=gateway-ca;/,
    );
    await ok(
      ...['server-cert', 'create', '--ca-cert', path('token-ca/ca.pem')],
      ...['--ca-key', 'pkcs11:token=org-keys;object=gateway-ca', '--ca-pin-env', 'ORG_PIN'],
      ...['--dns', 'localhost', '--out-dir', path('token-ca'), '--name', 'gateway'],
    );
    const verified = await run('openssl', [
      'verify',
      '-CAfile',
      path('token-ca/ca.pem'),
      path('token-ca/gateway.pem'),
    ]);
    assert.match(verified.stdout, /gateway\.pem: OK/, verified.stderr);
    // The CA certificate's key is the token's: another token key is refused as --ca-key.
    const wrongKey = await usage(
      {},
      ...[
        'server-cert',
        'create',
        '--ca-cert',
        path('token-ca/ca.pem'),
        '--ca-key',
        KEY,
        '--ca-pin-env',
        'ORG_PIN',
      ],
      ...['--dns', 'localhost', '--out-dir', path('token-ca'), '--name', 'other'],
    );
    assert.match(wrongKey, /is not the key of --ca-cert/);
  });

  test('the key never exists as a file and the token will not hand it out', async () => {
    assert.deepEqual(hsm.privateKeyProtection('org-keys', ORG_PIN, 'org-alice'), [HARDWARE_HELD]);
    assert.deepEqual(await privateKeyFiles([hsm.dir]), [], 'no private key in the token directory as a file');
    const ours = await privateKeyFiles([path('keys')]);
    assert.deepEqual(ours, [], 'create-key wrote only the public key');
    // The detector works: it finds this test's file keys, and no CA key beside the token CA's certificate.
    assert.deepEqual((await privateKeyFiles([dir])).sort(), [
      path('agents/agent-alpha-key.pem'),
      path('pki/ca-key.pem'),
      path('pki/gateway-key.pem'),
      path('token-ca/gateway-key.pem'),
    ]);
    for (const r of outputs) {
      assert.ok(!(r.stdout + r.stderr).includes(ORG_PIN), 'the PIN is never printed');
    }
  });
});
