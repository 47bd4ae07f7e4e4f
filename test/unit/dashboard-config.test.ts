import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { loadDashboardConfig } from '../../src/dashboard/config.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ag-dashboard-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const TOKEN = 'a'.repeat(32);
const env = { DASH: TOKEN, GW: 'g'.repeat(32), DB: 'postgres://dash:secret@127.0.0.1:5432/reg' };

async function load(text: string, environment: NodeJS.ProcessEnv = env) {
  const path = join(dir, `${Math.random().toString(36).slice(2)}.toml`);
  await writeFile(path, text);
  return loadDashboardConfig(path, environment);
}

async function problems(text: string, environment: NodeJS.ProcessEnv = env): Promise<string[]> {
  try {
    await load(text, environment);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  assert.fail('the config was accepted');
}

const GOOD = `
[dashboard]
listen_addr = "127.0.0.1:9480"
token_env = "DASH"
[registry]
database_url_env = "DB"
[[gateways]]
name = "gw-1"
admin_url = "http://127.0.0.1:9443"
token_env = "GW"
`;

test('a valid file: listen address, tokens, registry URL and gateways resolved from the environment', async () => {
  const loaded = await load(GOOD);
  assert.deepEqual(loaded.listen, { host: '127.0.0.1', port: 9480 });
  assert.equal(loaded.tokens.admin, TOKEN);
  assert.equal(loaded.tokens.readonly, undefined);
  assert.equal(loaded.ingestToken, undefined);
  assert.equal(loaded.databaseUrl, env.DB);
  assert.deepEqual(
    loaded.gateways.map((g) => [g.name, g.adminUrl.href]),
    [['gw-1', 'http://127.0.0.1:9443/']],
  );
  assert.equal(loaded.config.dashboard.session_ttl_s, 43_200);
});

test('plain HTTP off loopback, a missing token, duplicate names and unknown keys are refused, all at once', async () => {
  const found = await problems(
    `${GOOD.replace('127.0.0.1:9480', '0.0.0.0:9480')}
[[gateways]]
name = "gw-1"
admin_url = "http://127.0.0.1:9444"
token_env = "MISSING"
`,
  );
  assert.ok(
    found.some((p) => /^dashboard\.listen_addr: .*not a loopback address/.test(p)),
    found.join('\n'),
  );
  assert.ok(
    found.some((p) => /^gateways\[1\]\.name: "gw-1" is used twice/.test(p)),
    found.join('\n'),
  );
  assert.ok(
    found.some((p) => /^gateways\[1\]\.token_env: environment variable MISSING/.test(p)),
    found.join('\n'),
  );
  const posing = await problems(GOOD.replace('name = "gw-1"', 'name = "dashboard"'));
  assert.ok(
    posing.some((p) => p.startsWith('gateways[0].name: "dashboard" names the dashboard')),
    posing.join('\n'),
  );
  const unknown = await problems(GOOD.replace('[registry]', 'tokn_env = "X"\n[registry]'));
  assert.ok(
    unknown.some((p) => p.includes('tokn_env')),
    unknown.join('\n'),
  );
});

test('exactly one registry URL; short tokens and equal tokens are refused; nothing secret is quoted', async () => {
  const both = await problems(
    GOOD.replace('database_url_env = "DB"', 'database_url_env = "DB"\ndatabase_url = "postgres://x@y/z"'),
  );
  assert.ok(
    both.some((p) => p.startsWith('registry.database_url: set exactly one')),
    both.join('\n'),
  );
  const short = await problems(GOOD, { ...env, DASH: 'short' });
  assert.ok(
    short.some((p) => /^dashboard\.token_env: .*at least 24 characters/.test(p)),
    short.join('\n'),
  );
  const same = await problems(
    GOOD.replace('token_env = "DASH"', 'token_env = "DASH"\nreadonly_token_env = "DASH"'),
  );
  assert.ok(same.some((p) => p.startsWith('dashboard.readonly_token_env: the read-only token must differ')));
  const notPostgres = await problems(GOOD, { ...env, DB: 'mysql://dash:secret@h/x' });
  assert.ok(notPostgres.length > 0);
  for (const p of [...short, ...notPostgres]) assert.ok(!p.includes('secret') && !p.includes(TOKEN), p);
});
