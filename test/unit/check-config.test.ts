import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCheckConfig } from '../../src/cli/check-config.js';
import { writeServerTlsFiles } from '../helpers/tls-files.js';

const SECRET = 'c0rrect-h0rse';

describe('runCheckConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agw-check-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, 'server.pem');
  const key = join(dir, 'server-key.pem');
  const foreignKey = join(dir, 'foreign-key.pem');
  before(async () => {
    await writeServerTlsFiles(dir);
  });

  function configFile(name: string, body: string): string {
    const path = join(dir, name);
    writeFileSync(path, body);
    return path;
  }

  const serverTable = `[server]\nlisten_addr = "127.0.0.1:8443"\ntls_cert_path = ${JSON.stringify(cert)}\ntls_key_path = ${JSON.stringify(key)}\n`;

  async function run(path: string): Promise<{ code: number; out: string[]; err: string[] }> {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCheckConfig(
      path,
      (s) => out.push(s),
      (s) => err.push(s),
    );
    return { code, out, err };
  }

  test('a good config prints the redacted effective config and returns 0', async () => {
    const path = configFile(
      'good.toml',
      `${serverTable}[policy]\ndatabase_url = "postgres://gw:${SECRET}@db:5432/registry"\n`,
    );
    const { code, out, err } = await run(path);
    assert.equal(code, 0);
    assert.deepEqual(err, []);
    const printed = out.join('\n');
    assert.ok(!printed.includes(SECRET));
    const effective = JSON.parse(printed) as { policy: { database_url: string; max_connections: number } };
    assert.equal(effective.policy.database_url, 'postgres://gw:***@db:5432/registry');
    assert.equal(effective.policy.max_connections, 5);
  });

  test('a bad config prints every problem and returns 2', async () => {
    const path = configFile(
      'bad.toml',
      `${serverTable}bogus = 1\n[policy]\ndatabase_url = "postgres://gw:${SECRET}@db/registry"\nquery_timeout_ms = 0\n`,
    );
    const { code, out, err } = await run(path);
    assert.equal(code, 2);
    assert.deepEqual(out, []);
    const printed = err.join('\n');
    assert.match(printed, /unknown key "bogus" in \[server\]/);
    assert.match(printed, /policy\.query_timeout_ms: must be > 0/);
    assert.ok(printed.includes(`(config file: ${path})`));
    assert.ok(!printed.includes(SECRET));
  });

  test('a missing config file returns 2 and names the file', async () => {
    const path = join(dir, 'absent.toml');
    const { code, err } = await run(path);
    assert.equal(code, 2);
    assert.match(err.join('\n'), /cannot read the config file .*absent\.toml/);
  });

  test('a TOML syntax error returns 2 with line and column', async () => {
    const { code, err } = await run(configFile('syntax.toml', '[server\nlisten_addr = 1\n'));
    assert.equal(code, 2);
    assert.match(err.join('\n'), /TOML syntax error at line 1, column \d+/);
  });

  test('a missing TLS key file returns 2 and names the key', async () => {
    const path = configFile(
      'no-key.toml',
      `[server]\nlisten_addr = "127.0.0.1:8443"\ntls_cert_path = ${JSON.stringify(cert)}\ntls_key_path = ${JSON.stringify(join(dir, 'gone.pem'))}\n[policy]\ndatabase_url = "postgres://db/registry"\n`,
    );
    const { code, err } = await run(path);
    assert.equal(code, 2);
    assert.match(err.join('\n'), /server\.tls_key_path: cannot read .*gone\.pem.*: no such file/);
  });

  const withTls = (certPath: string, keyPath: string) =>
    `[server]\nlisten_addr = "127.0.0.1:8443"\ntls_cert_path = ${JSON.stringify(certPath)}\ntls_key_path = ${JSON.stringify(keyPath)}\n[policy]\ndatabase_url = "postgres://db/registry"\n`;

  test('a key that does not belong to the certificate returns 2, naming both files and the fix', async () => {
    const { code, out, err } = await run(configFile('foreign-key.toml', withTls(cert, foreignKey)));
    assert.equal(code, 2);
    assert.deepEqual(out, []);
    const printed = err.join('');
    assert.match(
      printed,
      /server\.tls_key_path: ".*foreign-key\.pem" is not the private key of the certificate in ".*server\.pem" \(their public keys differ\): point tls_key_path at the key written together with that certificate/,
    );
    assert.doesNotMatch(printed, /error:[0-9A-F]{8}/, 'no bare OpenSSL error');
  });

  test('swapped certificate and key paths return 2 and say which way round they go', async () => {
    const { code, err } = await run(configFile('swapped.toml', withTls(key, cert)));
    assert.equal(code, 2);
    const printed = err.join('');
    assert.match(printed, /server\.tls_cert_path and server\.tls_key_path are swapped/);
    assert.ok(
      printed.includes(
        `set tls_cert_path to ${JSON.stringify(cert)} and tls_key_path to ${JSON.stringify(key)}`,
      ),
    );
  });

  test('a key file in place of the certificate, or a file that is no PEM at all, is named as such', async () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'certificate');
    let r = await run(configFile('key-as-cert.toml', withTls(foreignKey, key)));
    assert.equal(r.code, 2);
    assert.match(
      r.err.join(''),
      /server\.tls_cert_path: ".*foreign-key\.pem" holds a private key, not a certificate/,
    );
    r = await run(configFile('garbage-cert.toml', withTls(garbage, key)));
    assert.equal(r.code, 2);
    assert.match(r.err.join(''), /server\.tls_cert_path: ".*garbage\.pem" is not a PEM certificate/);
    r = await run(configFile('garbage-key.toml', withTls(cert, garbage)));
    assert.equal(r.code, 2);
    assert.match(r.err.join(''), /server\.tls_key_path: ".*garbage\.pem" is not a PEM private key/);
  });

  test('a minimal file prints every effective value, also those resolved outside the schema', async () => {
    const { code, out } = await run(
      configFile(
        'minimal.toml',
        `${serverTable}[policy]\ndatabase_url = "postgres://db/registry"\n[rate_limit]\nburst_bytes = 65536\n` +
          '[rate_limit.identities."agent-x"]\nmax_tunnels_per_identity = 3\n',
      ),
    );
    assert.equal(code, 0);
    const effective = JSON.parse(out.join('')) as { rate_limit: Record<string, unknown> };
    assert.deepEqual(effective.rate_limit, {
      bytes_per_second: 0,
      burst_bytes: 65536,
      download_bytes_per_second: 0,
      download_burst_bytes: 65536,
      max_tunnels_per_identity: 256,
      upload_quota_bytes: 0,
      upload_quota_window_s: 86_400,
      download_quota_bytes: 0,
      download_quota_window_s: 86_400,
      total_bytes_per_second: 0,
      total_burst_bytes: 65536,
      shared: false,
      identities: {
        'agent-x': {
          bytes_per_second: 0,
          burst_bytes: 65536,
          download_bytes_per_second: 0,
          download_burst_bytes: 65536,
          max_tunnels_per_identity: 3,
          upload_quota_bytes: 0,
          upload_quota_window_s: 86_400,
          download_quota_bytes: 0,
          download_quota_window_s: 86_400,
        },
      },
    });
  });
});
