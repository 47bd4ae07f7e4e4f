import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfigText } from '../../src/config/load.js';
import { redactedConfig, redactUrl } from '../../src/config/redact.js';

const SECRET = 'Tr0ub4dor-and-3';

function load(policy: string, env: NodeJS.ProcessEnv = {}, tail = '') {
  const text = `[server]\nlisten_addr = "127.0.0.1:8443"\ntls_cert_path = "c"\ntls_key_path = "k"\n[policy]\n${policy}\n${tail}`;
  return parseConfigText(text, 'config.toml', env);
}

describe('redactedConfig', () => {
  test('masks the password of an inline database_url and keeps the rest', () => {
    const loaded = load(
      `database_url = "postgres://gateway:${SECRET}@db.internal:5432/registry?sslmode=require"`,
    );
    const out = redactedConfig(loaded) as { policy: { database_url: string } };
    assert.equal(out.policy.database_url, 'postgres://gateway:***@db.internal:5432/registry?sslmode=require');
    assert.ok(!JSON.stringify(out).includes(SECRET));
  });

  test('masks a password given as a query parameter', () => {
    const loaded = load(
      `database_url = "postgresql://db.internal/registry?user=gw&password=${SECRET}&sslpassword=${SECRET}x"`,
    );
    const text = JSON.stringify(redactedConfig(loaded));
    assert.ok(!text.includes(SECRET));
    assert.match(text, /user=gw/);
    assert.match(text, /password=\*\*\*/);
  });

  test('masks a percent-encoded password in both its encoded and decoded forms', () => {
    const loaded = load('database_url = "postgres://gw:p%40ss%2Fword@db/registry"');
    const text = JSON.stringify(redactedConfig(loaded));
    assert.ok(!text.includes('p%40ss%2Fword'));
    assert.ok(!text.includes('p@ss/word'));
    assert.match(text, /postgres:\/\/gw:\*\*\*@db\/registry/);
  });

  test('shows only the variable name for database_url_env, never the resolved URL', () => {
    const loaded = load('database_url_env = "AGW_DB"', { AGW_DB: `postgres://gw:${SECRET}@db/registry` });
    assert.ok(loaded.databaseUrl.includes(SECRET), 'precondition: the loaded config does hold the secret');
    const out = redactedConfig(loaded) as { policy: Record<string, unknown> };
    assert.equal(out.policy['database_url_env'], 'AGW_DB');
    assert.equal('database_url' in out.policy, false);
    const text = JSON.stringify(out);
    assert.ok(!text.includes(SECRET));
    assert.ok(!text.includes('db/registry'));
  });

  test('masks credentials in the OTLP endpoint', () => {
    const loaded = load(
      'database_url = "postgres://db/registry"',
      {},
      `[observability]\notlp_endpoint = "https://tracer:${SECRET}@otel.internal:4318"`,
    );
    const out = redactedConfig(loaded) as { observability: { otlp_endpoint: string } };
    assert.equal(out.observability.otlp_endpoint, 'https://tracer:***@otel.internal:4318/');
    assert.ok(!JSON.stringify(out).includes(SECRET));
  });

  test('includes the defaults and leaves the loaded config untouched', () => {
    const loaded = load(`database_url = "postgres://gw:${SECRET}@db/registry"`);
    const out = redactedConfig(loaded) as { policy: { query_timeout_ms: number }; rate_limit: unknown };
    assert.equal(out.policy.query_timeout_ms, 500);
    assert.deepEqual(out.rate_limit, { bytes_per_second: 0, burst_bytes: 1_048_576 });
    assert.equal(loaded.config.policy.database_url, `postgres://gw:${SECRET}@db/registry`);
  });
});

describe('redactUrl', () => {
  test('masks an unparsable value entirely', () => {
    assert.equal(redactUrl(`not a url ${SECRET}`), '***');
  });

  test('leaves a URL without secrets as it is', () => {
    assert.equal(redactUrl('postgres://gw@db:5432/registry'), 'postgres://gw@db:5432/registry');
  });
});
