import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type CliResult, fields, run, runCli } from '../helpers/cli-runner.js';

/**
 * `ca create`, `server-cert create|csr` and `agent create`, checked with openssl: what they write is what an
 * operator's other tools accept, and the printed fingerprint is that of the key openssl sees.
 */

let dir: string;
const path = (name: string) => join(dir, name);
const env = { CA_PASS: 'ca passphrase' };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ag-cli-pki-'));
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function ok(...args: string[]): Promise<CliResult> {
  const r = await runCli(args, { env });
  assert.equal(r.code, 0, `agent-gateway ${args.join(' ')}\n${r.stdout}${r.stderr}`);
  return r;
}

const mode = async (file: string) => (await stat(file)).mode & 0o777;

test('a CA with an encrypted key signs a server certificate that openssl verifies', async () => {
  await ok('ca', 'create', '--out-dir', path('ca'), '--passphrase-env', 'CA_PASS');
  assert.match(await readFile(path('ca/ca-key.pem'), 'utf8'), /BEGIN ENCRYPTED PRIVATE KEY/);
  assert.equal(await mode(path('ca/ca-key.pem')), 0o600);
  const caText = await run('openssl', ['x509', '-in', path('ca/ca.pem'), '-noout', '-text']);
  assert.match(caText.stdout, /CA:TRUE/);

  await ok(
    'server-cert',
    'create',
    ...['--ca-cert', path('ca/ca.pem'), '--ca-key', path('ca/ca-key.pem'), '--ca-passphrase-env', 'CA_PASS'],
    ...['--dns', 'gateway.internal', '--dns', 'localhost', '--ip', '127.0.0.1', '--out-dir', path('server')],
  );
  const verified = await run('openssl', ['verify', '-CAfile', path('ca/ca.pem'), path('server/server.pem')]);
  assert.equal(verified.code, 0, verified.stderr);
  const text = await run('openssl', ['x509', '-in', path('server/server.pem'), '-noout', '-text']);
  assert.match(text.stdout, /DNS:gateway\.internal, DNS:localhost, IP Address:127\.0\.0\.1/);
  assert.equal(await mode(path('server/server-key.pem')), 0o600);

  const wrongPass = await runCli(
    ['server-cert', 'create', '--ca-cert', path('ca/ca.pem'), '--ca-key', path('ca/ca-key.pem')].concat([
      '--ca-passphrase-env',
      'NOPE',
      '--dns',
      'x',
      '--out-dir',
      path('server2'),
    ]),
    { env: { NOPE: 'wrong' } },
  );
  assert.equal(wrongPass.code, 2);
  assert.match(wrongPass.stderr, /wrong passphrase/);
  const noNames = await runCli(['server-cert', 'csr', '--out-dir', path('csr')]);
  assert.equal(noNames.code, 2);
  assert.match(noNames.stderr, /needs at least one name: pass --dns NAME and\/or --ip ADDRESS/);
});

test('server-cert csr writes a request openssl accepts', async () => {
  await ok('server-cert', 'csr', '--dns', 'gw.example.com', '--out-dir', path('csr'));
  const checked = await run('openssl', [
    'req',
    '-in',
    path('csr/server.csr.pem'),
    '-noout',
    '-verify',
    '-text',
  ]);
  assert.equal(checked.code, 0, checked.stderr);
  assert.match(checked.stdout + checked.stderr, /verify OK/i);
  assert.match(checked.stdout, /DNS:gw\.example\.com/);
});

test('agent create: the identity extension under the configured OID, and the fingerprint openssl sees', async () => {
  await writeFile(path('gateway.toml'), '[policy]\nclient_ext_oid = "1.3.6.1.4.1.99999.7"\n');
  const created = await ok(
    ...['agent', 'create', '--identity', 'agent-ümlaut', '--out-dir', path('agents'), '--name', 'a1'],
    ...['--config', path('gateway.toml')],
  );
  const out = fields(created.stdout);
  assert.equal(out['identity'], 'agent-ümlaut');
  assert.equal(out['identity oid'], '1.3.6.1.4.1.99999.7');
  assert.match(out['certificate'] ?? '', /a1\.pem \(self-signed\)/);

  const der = path('agents/a1.spki.der');
  await run('sh', [
    '-c',
    `openssl x509 -in '${path('agents/a1.pem')}' -pubkey -noout | openssl pkey -pubin -outform DER -out '${der}'`,
  ]);
  const fingerprint = `sha256:${createHash('sha256')
    .update(await readFile(der))
    .digest('hex')}`;
  assert.equal(out['spki fingerprint'], fingerprint);

  const text = await run('openssl', ['x509', '-in', path('agents/a1.pem'), '-noout', '-text']);
  assert.match(text.stdout, /1\.3\.6\.1\.4\.1\.99999\.7:/);
  // The extension value is one DER UTF8String: tag 0x0c, length, the UTF-8 bytes.
  const utf8 = Buffer.from('agent-ümlaut', 'utf8');
  const certDer = (
    await run('openssl', [
      'x509',
      '-in',
      path('agents/a1.pem'),
      '-outform',
      'DER',
      '-out',
      path('agents/a1.der'),
    ])
  ).code;
  assert.equal(certDer, 0);
  const raw = await readFile(path('agents/a1.der'));
  assert.ok(raw.includes(Buffer.concat([Buffer.from([0x0c, utf8.length]), utf8])));
});

test('agent create: signed by a CA on request; existing files are kept unless --force', async () => {
  await ok('ca', 'create', '--out-dir', path('ca2'), '--unencrypted');
  const args = ['agent', 'create', '--identity', 'agent-ca', '--out-dir', path('agents')].concat([
    '--ca-cert',
    path('ca2/ca.pem'),
    '--ca-key',
    path('ca2/ca-key.pem'),
  ]);
  const first = await ok(...args);
  const verified = await run('openssl', [
    'verify',
    '-CAfile',
    path('ca2/ca.pem'),
    path('agents/agent-ca.pem'),
  ]);
  assert.equal(verified.code, 0, verified.stderr);

  const again = await runCli(args);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already exist: choose another --out-dir\/--name, or pass --force/);
  assert.equal(fields((await ok(...args, '--force')).stdout)['identity'], 'agent-ca');
  assert.notEqual(
    fields(first.stdout)['spki fingerprint'],
    fields((await ok(...args, '--force')).stdout)['spki fingerprint'],
    'a new key each time',
  );

  await ok('principal', 'create-key', '--out', path('other-key.pem'), '--unencrypted');
  const mismatched = await runCli(
    ['agent', 'create', '--identity', 'x', '--out-dir', path('agents'), '--name', 'x'].concat([
      '--ca-cert',
      path('ca2/ca.pem'),
      '--ca-key',
      path('other-key.pem'),
    ]),
  );
  assert.equal(mismatched.code, 2);
  assert.match(mismatched.stderr, /--ca-key .* is not the key of --ca-cert/);
  const halfCa = await runCli([
    'agent',
    'create',
    '--identity',
    'x',
    '--out-dir',
    dir,
    '--ca-cert',
    path('ca2/ca.pem'),
  ]);
  assert.equal(halfCa.code, 2);
  assert.match(halfCa.stderr, /--ca-cert and --ca-key go together/);
});
