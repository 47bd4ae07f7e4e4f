import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { runCheckConfig } from '../../src/cli/check-config.js';

const SECRET = 'c0rrect-h0rse';

describe('runCheckConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agw-check-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  writeFileSync(cert, 'certificate');
  writeFileSync(key, 'key');

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
});
