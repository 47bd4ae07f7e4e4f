import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { ListenAddrError, parseListenAddr } from '../../src/config/listen-addr.js';
import { loadConfig, parseConfigText } from '../../src/config/load.js';
import {
  adminSchema,
  configSchema,
  egressSchema,
  observabilitySchema,
  policySchema,
  rateLimitSchema,
  serverSchema,
} from '../../src/config/schema.js';
import { writeServerTlsFiles } from '../helpers/tls-files.js';

const SECRET = 'hunter2-s3cret';
const URL_WITH_SECRET = `postgres://gateway:${SECRET}@db.internal:5432/registry`;

/** A minimal valid config; `extra` is appended and lands in whichever table was opened last. */
function minimal(overrides: { server?: string; policy?: string; tail?: string } = {}): string {
  return [
    '[server]',
    overrides.server ??
      'listen_addr = "127.0.0.1:8443"\ntls_cert_path = "cert.pem"\ntls_key_path = "key.pem"',
    '[policy]',
    overrides.policy ?? `database_url = "${URL_WITH_SECRET}"`,
    overrides.tail ?? '',
  ].join('\n');
}

/** The ConfigError thrown by parsing `text` (fails the test if none is thrown). */
function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfigText(text, '/etc/agent-gateway/config.toml', env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the configuration to be rejected');
}

function assertProblem(error: ConfigError, pattern: RegExp): void {
  assert.ok(
    error.problems.some((p) => pattern.test(p)),
    `no problem matches ${pattern}; problems were:\n${error.problems.join('\n')}`,
  );
}

describe('parseConfigText: valid configurations', () => {
  test('a minimal config gets every default', () => {
    const loaded = parseConfigText(minimal(), 'config.toml', {});
    const c = loaded.config;
    assert.equal(loaded.path, 'config.toml');
    assert.equal(loaded.databaseUrl, URL_WITH_SECRET);
    assert.equal(c.server.listen_addr, '127.0.0.1:8443');
    assert.equal(c.server.handshake_timeout_ms, 10_000);
    assert.equal(c.server.request_timeout_ms, 10_000);
    assert.equal(c.server.tunnel_idle_timeout_s, 900);
    assert.equal(c.server.shutdown_grace_s, 30);
    assert.equal(c.server.h2_max_concurrent_streams, 256);
    assert.equal(c.observability.log_level, 'info');
    assert.equal(c.observability.otlp_endpoint, undefined);
    assert.equal(c.policy.client_ext_oid, '1.3.6.1.4.1.57264.1.1');
    assert.equal(c.policy.max_connections, 5);
    assert.equal(c.policy.connect_timeout_ms, 5000);
    assert.equal(c.policy.pool_acquire_timeout_ms, 1000);
    assert.equal(c.policy.query_timeout_ms, 500);
    assert.deepEqual(c.rate_limit, { bytes_per_second: 0, burst_bytes: 1_048_576 });
    assert.deepEqual(c.egress, { allow_cidrs: [], deny_cidrs: [], connect_timeout_ms: 10_000 });
  });

  test('the identity OID is encoded as DER content bytes', () => {
    const loaded = parseConfigText(minimal(), 'config.toml', {});
    // 1.3 -> 0x2b, 6.1.4.1 as is, 57264 -> 0x83 0xbf 0x30 (base 128), then 1.1.
    assert.equal(loaded.identityOidContent.toString('hex'), '2b0601040183bf300101');
  });

  test('database_url_env is resolved from the given environment', () => {
    const text = minimal({ policy: 'database_url_env = "REGISTRY_URL"' });
    const loaded = parseConfigText(text, 'config.toml', { REGISTRY_URL: 'postgresql://r@localhost/reg' });
    assert.equal(loaded.databaseUrl, 'postgresql://r@localhost/reg');
    assert.equal(loaded.config.policy.database_url_env, 'REGISTRY_URL');
    assert.equal(loaded.config.policy.database_url, undefined);
  });

  test('values at the edges of their ranges are accepted', () => {
    const loaded = parseConfigText(
      minimal({
        server:
          'listen_addr = "[::]:0"\ntls_cert_path = "c"\ntls_key_path = "k"\nshutdown_grace_s = 0\n' +
          'h2_stream_window_bytes = 65535\nh2_max_concurrent_streams = 10000',
        tail: '[rate_limit]\nbytes_per_second = 0\nburst_bytes = 0\n[egress]\nallow_cidrs = ["10.0.0.0/8", "fd00::/8"]',
      }),
      'config.toml',
      {},
    );
    assert.equal(loaded.config.server.shutdown_grace_s, 0);
    assert.equal(loaded.config.server.h2_stream_window_bytes, 65_535);
    assert.deepEqual(loaded.config.egress.allow_cidrs, ['10.0.0.0/8', 'fd00::/8']);
  });

  test('config.example.toml is valid and lists every key of the schema', () => {
    const text = readFileSync(new URL('../../config.example.toml', import.meta.url), 'utf8');
    const loaded = parseConfigText(text, 'config.example.toml', {
      AGENT_GATEWAY_DATABASE_URL: 'postgres://u@localhost/db',
    });
    assert.equal(loaded.config.policy.database_url_env, 'AGENT_GATEWAY_DATABASE_URL');
    const tables = {
      server: serverSchema,
      observability: observabilitySchema,
      policy: policySchema,
      rate_limit: rateLimitSchema,
      egress: egressSchema,
      admin: adminSchema,
    };
    assert.deepEqual(Object.keys(tables).sort(), Object.keys(configSchema.shape).sort());
    for (const [table, schema] of Object.entries(tables)) {
      assert.match(text, new RegExp(`^\\[${table}\\]$`, 'm'), `[${table}] missing from the example`);
      for (const key of Object.keys(schema.shape)) {
        // Commented-out keys (optional ones without a default) count: they are documented.
        assert.match(text, new RegExp(`^(# )?${key} = `, 'm'), `${table}.${key} missing from the example`);
      }
    }
  });
});

describe('parseConfigText: database URL sources', () => {
  test('both database_url and database_url_env is an error', () => {
    const error = problemsOf(
      minimal({ policy: `database_url = "${URL_WITH_SECRET}"\ndatabase_url_env = "X"` }),
      { X: URL_WITH_SECRET },
    );
    assertProblem(
      error,
      /^policy\.database_url: set exactly one of policy\.database_url and policy\.database_url_env$/,
    );
  });

  test('neither database_url nor database_url_env is an error', () => {
    const error = problemsOf(minimal({ policy: 'max_connections = 2' }));
    assertProblem(error, /^policy\.database_url: set exactly one/);
  });

  test('neither is reported even when another policy key is also wrong', () => {
    const error = problemsOf(minimal({ policy: 'max_connections = 1.5' }));
    assertProblem(error, /^policy\.database_url: set exactly one/);
    assertProblem(error, /^policy\.max_connections: must be a whole number$/);
  });

  test('an unset or empty database_url_env variable names the variable', () => {
    const text = minimal({ policy: 'database_url_env = "AGW_DB_URL"' });
    for (const env of [{}, { AGW_DB_URL: '' }, { AGW_DB_URL: '   ' }]) {
      const error = problemsOf(text, env);
      assertProblem(
        error,
        /^policy\.database_url_env: environment variable AGW_DB_URL is not set or is empty/,
      );
    }
  });

  test('database_url_env must be a variable name', () => {
    const error = problemsOf(minimal({ policy: 'database_url_env = "postgres://x"' }));
    assertProblem(error, /^policy\.database_url_env: must be an environment variable name/);
  });

  test('a non-PostgreSQL URL is refused without echoing it', () => {
    const inline = problemsOf(minimal({ policy: `database_url = "mysql://u:${SECRET}@h/db"` }));
    assertProblem(inline, /^policy\.database_url: must be a postgres:\/\/ or postgresql:\/\/ URL/);
    assert.ok(!inline.message.includes(SECRET));

    const fromEnv = problemsOf(minimal({ policy: 'database_url_env = "U"' }), { U: `${SECRET}` });
    assertProblem(fromEnv, /^policy\.database_url_env: environment variable U must be a postgres:\/\//);
    assert.ok(!fromEnv.message.includes(SECRET));
  });

  test('an empty database_url is refused', () => {
    assertProblem(
      problemsOf(minimal({ policy: 'database_url = ""' })),
      /^policy\.database_url: must not be empty$/,
    );
  });
});

describe('parseConfigText: identity OID', () => {
  const cases: [string, RegExp][] = [
    ['1.3.6.abc', /must be a dotted OID such as 1\.3\.6\.1\.4\.1\.57264\.1\.1$/],
    ['1', /must be a dotted OID/],
    ['1..3', /must be a dotted OID/],
    ['3.1.2', /must be a dotted OID/],
    ['1.03.6', /must be a dotted OID/],
    ['', /must be a dotted OID/],
    ['1.40.1', /under arc 1 the second arc must be at most 39, not 40/],
  ];
  for (const [oid, pattern] of cases) {
    test(`client_ext_oid = ${JSON.stringify(oid)} is refused`, () => {
      const error = problemsOf(
        minimal({ policy: `database_url = "postgres://h/db"\nclient_ext_oid = "${oid}"` }),
      );
      assertProblem(error, new RegExp(`^policy\\.client_ext_oid: .*${pattern.source}`));
    });
  }

  test('a custom OID is encoded', () => {
    const loaded = parseConfigText(
      minimal({ policy: 'database_url = "postgres://h/db"\nclient_ext_oid = "2.999.3"' }),
      'c.toml',
      {},
    );
    // 2.999 -> 2*40+999 = 1079 = 0x88 0x37 in base 128.
    assert.equal(loaded.identityOidContent.toString('hex'), '883703');
  });
});

describe('parseConfigText: unknown keys', () => {
  const levels: [string, string, string][] = [
    ['root', 'bogus = 1\n' + minimal(), '[root]'],
    [
      'server',
      minimal({ server: 'listen_addr = "a:1"\ntls_cert_path = "c"\ntls_key_path = "k"\nbogus = 1' }),
      '[server]',
    ],
    ['observability', minimal({ tail: '[observability]\nbogus = 1' }), '[observability]'],
    ['policy', minimal({ policy: 'database_url = "postgres://h/db"\nbogus = 1' }), '[policy]'],
    ['rate_limit', minimal({ tail: '[rate_limit]\nbogus = 1' }), '[rate_limit]'],
    ['egress', minimal({ tail: '[egress]\nbogus = 1' }), '[egress]'],
    ['a sub-table', minimal({ tail: '[server.tls]\nx = 1' }), '[server]'],
  ];
  for (const [level, text, table] of levels) {
    test(`an unknown key in ${level} is refused`, () => {
      const unknown = level === 'a sub-table' ? 'tls' : 'bogus';
      assertProblem(problemsOf(text), new RegExp(`^unknown key "${unknown}" in \\${table.slice(0, -1)}\\]`));
    });
  }

  test('a misspelt key gets a did-you-mean suggestion', () => {
    const error = problemsOf(minimal({ tail: '[rate_limt]\nbytes_per_second = 1' }));
    assert.ok(error.problems.includes('unknown key "rate_limt" in [root]; did you mean "rate_limit"?'));
    const inTable = problemsOf(minimal({ policy: 'database_url = "postgres://h/db"\nquery_timout_ms = 5' }));
    assertProblem(
      inTable,
      /^unknown key "query_timout_ms" in \[policy\]; did you mean "query_timeout_ms"\?$/,
    );
  });

  test('a key under the wrong table says where it belongs', () => {
    const error = problemsOf(
      minimal({
        server: 'listen_addr = "a:1"\ntls_cert_path = "c"\ntls_key_path = "k"\nlog_level = "debug"',
      }),
    );
    assertProblem(error, /^unknown key "log_level" in \[server\]; it belongs in \[observability\]$/);
  });

  test('an unrelated unknown key lists the known keys', () => {
    const error = problemsOf(minimal({ tail: '[rate_limit]\nzzzzzz = 1' }));
    assertProblem(
      error,
      /^unknown key "zzzzzz" in \[rate_limit\]; remove it \(known keys: bytes_per_second, burst_bytes, download_bytes_per_second, download_burst_bytes, total_bytes_per_second, total_burst_bytes, max_tunnels_per_identity, shared, upload_quota_bytes, upload_quota_window_s, download_quota_bytes, download_quota_window_s, identities\)$/,
    );
  });
});

describe('parseConfigText: workers and shared budgets', () => {
  const server = 'listen_addr = "127.0.0.1:8443"\ntls_cert_path = "cert.pem"\ntls_key_path = "key.pem"';
  test('workers > 1 with a limit (the default tunnel cap counts) needs shared = true', () => {
    const error = problemsOf(minimal({ server: `${server}\nworkers = 2` }));
    assertProblem(error, /^server\.workers: 2 workers would each enforce \[rate_limit\] on their own/);
    const limited = problemsOf(
      minimal({
        server: `${server}\nworkers = 4`,
        tail: '[rate_limit]\nmax_tunnels_per_identity = 0\nbytes_per_second = 10',
      }),
    );
    assertProblem(limited, /^server\.workers: 4 workers/);
  });

  test('workers > 1 is accepted with shared = true, or with no limit at all', () => {
    const shared = parseConfigText(
      minimal({
        server: `${server}\nworkers = 2`,
        tail: '[rate_limit]\nshared = true\nbytes_per_second = 10',
      }),
      'c.toml',
      {},
    );
    assert.equal(shared.config.server.workers, 2);
    const unlimited = parseConfigText(
      minimal({ server: `${server}\nworkers = 2`, tail: '[rate_limit]\nmax_tunnels_per_identity = 0' }),
      'c.toml',
      {},
    );
    assert.equal(unlimited.config.server.workers, 2);
    assert.equal(parseConfigText(minimal(), 'c.toml', {}).config.server.workers, 1);
  });
});

describe('parseConfigText: types and ranges', () => {
  const cases: [string, string, RegExp][] = [
    [
      'a number for a string',
      minimal({ server: 'listen_addr = 8443\ntls_cert_path = "c"\ntls_key_path = "k"' }),
      /^server\.listen_addr: must be a string, not an integer$/,
    ],
    [
      'a quoted number',
      minimal({ policy: 'database_url = "postgres://h/db"\nmax_connections = "5"' }),
      /^policy\.max_connections: must be a number, not a string \(write it without quotes\)$/,
    ],
    [
      'a string for a table',
      'server = "x"\n[policy]\ndatabase_url = "postgres://h/db"',
      /^server: must be a table, not a string$/,
    ],
    [
      'a string for an array',
      minimal({ tail: '[egress]\nallow_cidrs = "10.0.0.0/8"' }),
      /^egress\.allow_cidrs: must be an array, not a string$/,
    ],
    [
      'a number in a CIDR list',
      minimal({ tail: '[egress]\ndeny_cidrs = ["10.0.0.0/8", 7]' }),
      /^egress\.deny_cidrs\[1\]: must be a string, not an integer$/,
    ],
    [
      'a boolean for a number',
      minimal({ tail: '[rate_limit]\nburst_bytes = true' }),
      /^rate_limit\.burst_bytes: must be a number, not a boolean$/,
    ],
    [
      'a date for a number',
      minimal({ tail: '[egress]\nconnect_timeout_ms = 1979-05-27T07:32:00Z' }),
      /^egress\.connect_timeout_ms: must be a number, not a date-time$/,
    ],
    [
      'an unknown log level',
      minimal({ tail: '[observability]\nlog_level = "verbose"' }),
      /^observability\.log_level: must be one of "trace", "debug", "info", "warn", "error", "fatal"$/,
    ],
    [
      'a non-http OTLP endpoint',
      minimal({ tail: '[observability]\notlp_endpoint = "ftp://collector"' }),
      /^observability\.otlp_endpoint: must be an http:\/\/ or https:\/\/ URL$/,
    ],
    [
      'zero',
      minimal({ policy: 'database_url = "postgres://h/db"\nquery_timeout_ms = 0' }),
      /^policy\.query_timeout_ms: must be > 0$/,
    ],
    [
      'a negative timeout',
      minimal({ tail: '[egress]\nconnect_timeout_ms = -5' }),
      /^egress\.connect_timeout_ms: must be > 0$/,
    ],
    [
      'a negative grace',
      minimal({
        server: 'listen_addr = "a:1"\ntls_cert_path = "c"\ntls_key_path = "k"\nshutdown_grace_s = -1',
      }),
      /^server\.shutdown_grace_s: must be >= 0$/,
    ],
    [
      'a negative rate',
      minimal({ tail: '[rate_limit]\nbytes_per_second = -1' }),
      /^rate_limit\.bytes_per_second: must be >= 0$/,
    ],
    [
      'a fraction',
      minimal({
        server: 'listen_addr = "a:1"\ntls_cert_path = "c"\ntls_key_path = "k"\ntunnel_idle_timeout_s = 1.5',
      }),
      /^server\.tunnel_idle_timeout_s: must be a whole number$/,
    ],
    [
      'infinity',
      minimal({
        server: 'listen_addr = "a:1"\ntls_cert_path = "c"\ntls_key_path = "k"\nrequest_timeout_ms = inf',
      }),
      /^server\.request_timeout_ms: must be a finite number, not inf$/,
    ],
    [
      'a pool too large',
      minimal({ policy: 'database_url = "postgres://h/db"\nmax_connections = 1001' }),
      /^policy\.max_connections: must be <= 1000$/,
    ],
    [
      'a window too small',
      minimal({
        server: 'listen_addr = "a:1"\ntls_cert_path = "c"\ntls_key_path = "k"\nh2_stream_window_bytes = 100',
      }),
      /^server\.h2_stream_window_bytes: must be >= 65535$/,
    ],
    [
      'a missing required key',
      minimal({ server: 'listen_addr = "a:1"\ntls_cert_path = "c"' }),
      /^server\.tls_key_path: required$/,
    ],
    [
      'an empty path',
      minimal({ server: 'listen_addr = "a:1"\ntls_cert_path = ""\ntls_key_path = "k"' }),
      /^server\.tls_cert_path: must not be empty$/,
    ],
    [
      'a missing table',
      '[policy]\ndatabase_url = "postgres://h/db"',
      /^server: required table is missing; add a \[server\] section$/,
    ],
  ];
  for (const [what, text, pattern] of cases) {
    test(`${what} is refused with the key named`, () => {
      assertProblem(problemsOf(text), pattern);
    });
  }

  test('the same leaf name in two tables is told apart by its path', () => {
    const error = problemsOf(
      minimal({
        policy: 'database_url = "postgres://h/db"\nconnect_timeout_ms = 0',
        tail: '[egress]\nconnect_timeout_ms = 0',
      }),
    );
    assertProblem(error, /^policy\.connect_timeout_ms: must be > 0$/);
    assertProblem(error, /^egress\.connect_timeout_ms: must be > 0$/);
  });
});

describe('parseConfigText: rate limits', () => {
  test('every rate-limit key, with per-identity tables, is accepted and typed', () => {
    const loaded = parseConfigText(
      minimal({
        tail: [
          '[rate_limit]',
          'bytes_per_second = 1048576',
          'burst_bytes = 65536',
          'download_bytes_per_second = 2097152',
          'download_burst_bytes = 131072',
          'total_bytes_per_second = 10485760',
          'total_burst_bytes = 1048576',
          'max_tunnels_per_identity = 64',
          '[rate_limit.identities."agent-x"]',
          'bytes_per_second = 65536',
          '[rate_limit.identities."Agent.Y"]',
          'max_tunnels_per_identity = 0',
          'burst_bytes = 1',
        ].join('\n'),
      }),
      'config.toml',
      {},
    );
    const rl = loaded.config.rate_limit;
    assert.equal(rl.total_bytes_per_second, 10_485_760);
    assert.equal(rl.max_tunnels_per_identity, 64);
    assert.deepEqual(rl.identities, {
      'agent-x': { bytes_per_second: 65_536 },
      'Agent.Y': { max_tunnels_per_identity: 0, burst_bytes: 1 },
    });
  });

  const cases: Array<[string, string, RegExp]> = [
    [
      'a rate with a burst of 0',
      '[rate_limit]\nbytes_per_second = 1000\nburst_bytes = 0',
      /^rate_limit\.burst_bytes: must be > 0 while rate_limit\.bytes_per_second is set; /,
    ],
    [
      'a download rate with a download burst of 0',
      '[rate_limit]\ndownload_bytes_per_second = 1000\ndownload_burst_bytes = 0',
      /^rate_limit\.download_burst_bytes: must be > 0 while rate_limit\.download_bytes_per_second is set; /,
    ],
    [
      'a total rate using burst_bytes = 0',
      '[rate_limit]\nburst_bytes = 0\ntotal_bytes_per_second = 1000',
      /^rate_limit\.burst_bytes: must be > 0 while rate_limit\.total_bytes_per_second is set; /,
    ],
    [
      'an identity rate inheriting a burst of 0',
      '[rate_limit]\nburst_bytes = 0\n[rate_limit.identities."agent-x"]\nbytes_per_second = 1',
      /^rate_limit\.identities\.agent-x\.bytes_per_second: is set but the burst it uses, rate_limit\.burst_bytes, is 0; /,
    ],
    [
      'a negative identity rate',
      '[rate_limit.identities."agent-x"]\nbytes_per_second = -5',
      /^rate_limit\.identities\.agent-x\.bytes_per_second: must be >= 0$/,
    ],
    [
      'a fractional burst',
      '[rate_limit]\nburst_bytes = 1024.5',
      /^rate_limit\.burst_bytes: must be a whole number$/,
    ],
    [
      'a negative tunnel cap',
      '[rate_limit]\nmax_tunnels_per_identity = -1',
      /^rate_limit\.max_tunnels_per_identity: must be >= 0$/,
    ],
    [
      'a misspelt key in an identity table',
      '[rate_limit.identities."agent-x"]\nbytes_per_secnd = 5',
      /^unknown key "bytes_per_secnd" in \[rate_limit\.identities\.agent-x\]; did you mean "bytes_per_second"\?$/,
    ],
    [
      'a global-only key in an identity table',
      '[rate_limit.identities."agent-x"]\ntotal_bytes_per_second = 5',
      /^unknown key "total_bytes_per_second" in \[rate_limit\.identities\.agent-x\]; it belongs in \[rate_limit\]$/,
    ],
    [
      'an empty identity name',
      '[rate_limit.identities.""]\nbytes_per_second = 5',
      /^rate_limit\.identities\."": an identity name must not be empty/,
    ],
    [
      'an identity that is not a table',
      '[rate_limit]\nidentities = { "agent-x" = 5 }',
      /^rate_limit\.identities\.agent-x: must be a table, not an integer$/,
    ],
  ];
  for (const [what, tail, pattern] of cases) {
    test(`${what} is refused with the key named`, () => {
      assertProblem(problemsOf(minimal({ tail })), pattern);
    });
  }

  test('a rate-limit problem is reported together with schema problems elsewhere', () => {
    const error = problemsOf(
      minimal({
        tail: '[rate_limit]\nbytes_per_second = 1000\nburst_bytes = 0\n[egress]\nconnect_timeout_ms = 0',
      }),
    );
    assertProblem(error, /^rate_limit\.burst_bytes: must be > 0/);
    assertProblem(error, /^egress\.connect_timeout_ms: must be > 0$/);
  });
});

describe('parseConfigText: CIDRs', () => {
  test('every bad entry of allow_cidrs and deny_cidrs is reported with its index', () => {
    const error = problemsOf(
      minimal({
        tail: '[egress]\nallow_cidrs = ["10.0.0.0/8", "10.0.0.1/8", "not-an-ip"]\ndeny_cidrs = ["::1/129", "", "fe80::1%eth0/128", "1.2.3.4/33"]',
      }),
    );
    assertProblem(error, /^egress\.allow_cidrs\[1\]: .*host bits/);
    assertProblem(error, /^egress\.allow_cidrs\[2\]: .*"not-an-ip"/);
    assertProblem(error, /^egress\.deny_cidrs\[0\]: .*prefix/);
    assertProblem(error, /^egress\.deny_cidrs\[1\]: .*empty/);
    assertProblem(error, /^egress\.deny_cidrs\[2\]: .*zone/);
    assertProblem(error, /^egress\.deny_cidrs\[3\]: .*prefix/);
    assert.ok(
      !error.problems.some((p) => p.startsWith('egress.allow_cidrs[0]')),
      'a valid entry was flagged',
    );
  });
});

describe('parseConfigText: listen_addr', () => {
  const bad = [
    'localhost',
    ':8443',
    '::1:8443',
    '[::1]',
    '[::1',
    '[::1]:99999',
    'host:abc',
    'host:',
    '[nope]:1',
    'bad_host!:1',
    '1.2.3:80',
    'a..b:1',
  ];
  for (const addr of bad) {
    test(`listen_addr = ${JSON.stringify(addr)} is refused`, () => {
      const server = `listen_addr = ${JSON.stringify(addr)}\ntls_cert_path = "c"\ntls_key_path = "k"`;
      const error = problemsOf(minimal({ server }));
      assertProblem(error, new RegExp(`^server\\.listen_addr: "${addr.replace(/[[\]().]/g, '\\$&')}"`));
    });
  }

  test('parseListenAddr splits host and port', () => {
    assert.deepEqual(parseListenAddr('0.0.0.0:8443'), { host: '0.0.0.0', port: 8443 });
    assert.deepEqual(parseListenAddr('[::]:0'), { host: '::', port: 0 });
    assert.deepEqual(parseListenAddr('[fe80::1%eth0]:65535'), { host: 'fe80::1%eth0', port: 65535 });
    assert.deepEqual(parseListenAddr('gateway.internal:443'), { host: 'gateway.internal', port: 443 });
    assert.throws(() => parseListenAddr('::1'), ListenAddrError);
  });
});

describe('parseConfigText: TOML syntax and reporting', () => {
  test('a TOML syntax error gives line and column', () => {
    const error = problemsOf('[server]\nlisten_addr = "a:1"\ntls_cert_path = \n');
    assert.equal(error.problems.length, 1);
    assertProblem(error, /^TOML syntax error at line 3, column \d+: /);
  });

  test('a TOML syntax error does not quote the lines around it', () => {
    const error = problemsOf(`[policy]\ndatabase_url = "${URL_WITH_SECRET}"\nmax_connections = = 3\n`);
    assertProblem(error, /^TOML syntax error at line 3/);
    assert.ok(!error.message.includes(SECRET));
  });

  test('a duplicate key is a syntax error', () => {
    assertProblem(
      problemsOf(`${minimal()}\n[policy]\nmax_connections = 1`),
      /^TOML syntax error at line \d+, column \d+/,
    );
  });

  test('every problem is reported at once, and the message names the file', () => {
    const error = problemsOf(
      'bogus = 1\n[server]\nlisten_addr = "nope"\ntls_cert_path = "c"\ntls_key_path = "k"\n' +
        '[policy]\nquery_timeout_ms = -1\n[egress]\nallow_cidrs = ["x"]',
    );
    assertProblem(error, /^unknown key "bogus" in \[root\]/);
    assertProblem(error, /^server\.listen_addr: /);
    assertProblem(error, /^policy\.query_timeout_ms: must be > 0$/);
    assertProblem(error, /^policy\.database_url: set exactly one/);
    assertProblem(error, /^egress\.allow_cidrs\[0\]: /);
    assert.match(error.message, /\(config file: \/etc\/agent-gateway\/config\.toml\)/);
    for (const problem of error.problems)
      assert.ok(error.message.includes(problem), `message lacks ${problem}`);
  });

  test('no problem message contains the database password', () => {
    const error = problemsOf(
      `[server]\nlisten_addr = 1\n[policy]\ndatabase_url = "${URL_WITH_SECRET}"\ndatabase_url_env = "X"\nbogus = "${SECRET}"`,
      { X: URL_WITH_SECRET },
    );
    assert.ok(error.problems.length >= 3);
    assert.ok(!error.message.includes(SECRET));
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agw-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  let tls: Awaited<ReturnType<typeof writeServerTlsFiles>>;
  before(async () => {
    tls = await writeServerTlsFiles(dir);
  });
  mkdirSync(join(dir, 'a-directory'));

  function writeConfig(name: string, cert: string, key: string): string {
    const path = join(dir, name);
    writeFileSync(
      path,
      minimal({
        server: `listen_addr = "127.0.0.1:0"\ntls_cert_path = ${JSON.stringify(cert)}\ntls_key_path = ${JSON.stringify(key)}`,
      }),
    );
    return path;
  }

  test('loads a valid file whose TLS certificate and key belong together', async () => {
    const path = writeConfig('ok.toml', tls.certPath, tls.keyPath);
    const loaded = await loadConfig(path, {});
    assert.equal(loaded.path, path);
    assert.equal(loaded.config.server.tls_cert_path, tls.certPath);
  });

  test('a key of another certificate is a ConfigError naming both files', async () => {
    const path = writeConfig('foreign.toml', tls.certPath, tls.foreignKeyPath);
    await assert.rejects(loadConfig(path, {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assertProblem(
        error,
        /^server\.tls_key_path: ".*foreign-key\.pem" is not the private key of the certificate in ".*server\.pem"/,
      );
      return true;
    });
  });

  test('a missing config file is a ConfigError naming the path', async () => {
    const path = join(dir, 'missing.toml');
    await assert.rejects(loadConfig(path, {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assertProblem(error, /^cannot read the config file .*missing\.toml.*: no such file/);
      assert.match(error.message, /\(config file: .*missing\.toml\)/);
      return true;
    });
  });

  test('unreadable TLS files are reported with their keys', async () => {
    const path = writeConfig('bad-tls.toml', join(dir, 'nope.pem'), join(dir, 'a-directory'));
    await assert.rejects(loadConfig(path, {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assertProblem(error, /^server\.tls_cert_path: cannot read ".*nope\.pem": no such file$/);
      assertProblem(error, /^server\.tls_key_path: ".*a-directory" is not a regular file$/);
      return true;
    });
  });

  test('a relative TLS path is shown resolved against the working directory', async () => {
    const path = writeConfig('relative.toml', 'no/such/cert.pem', tls.keyPath);
    await assert.rejects(loadConfig(path, {}), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assertProblem(
        error,
        /^server\.tls_cert_path: cannot read "no\/such\/cert\.pem" \(resolved to "\/.*no\/such\/cert\.pem"\)/,
      );
      return true;
    });
  });
});

describe('[admin]', () => {
  const token = 'x'.repeat(32);
  test('off by default: no tokens are read', () => {
    const loaded = parseConfigText(minimal(), 'c.toml', {});
    assert.equal(loaded.adminTokens, undefined);
    assert.equal(loaded.config.admin.listen_addr, undefined);
  });

  test('on loopback, with the tokens from the environment', () => {
    const loaded = parseConfigText(
      minimal({ tail: '[admin]\nlisten_addr = "127.0.0.1:9443"\nreadonly_token_env = "READ_TOKEN"' }),
      'c.toml',
      { AGENT_GATEWAY_ADMIN_TOKEN: token, READ_TOKEN: 'y'.repeat(32) },
    );
    assert.deepEqual(loaded.adminTokens, { admin: token, readonly: 'y'.repeat(32) });
  });

  test('plain HTTP elsewhere than loopback is refused, naming the fix', () => {
    const error = problemsOf(minimal({ tail: '[admin]\nlisten_addr = "0.0.0.0:9443"' }), {
      AGENT_GATEWAY_ADMIN_TOKEN: token,
    });
    assertProblem(
      error,
      /^admin\.listen_addr: 0\.0\.0\.0:9443 is not a loopback address: .*set admin\.tls_cert_path and admin\.tls_key_path/,
    );
  });

  test('a missing, short or shared token is refused without showing it', () => {
    assertProblem(
      problemsOf(minimal({ tail: '[admin]\nlisten_addr = "127.0.0.1:9443"' }), {}),
      /^admin\.token_env: environment variable AGENT_GATEWAY_ADMIN_TOKEN is not set or is empty/,
    );
    const short = problemsOf(minimal({ tail: '[admin]\nlisten_addr = "127.0.0.1:9443"' }), {
      AGENT_GATEWAY_ADMIN_TOKEN: 'short-secret',
    });
    assertProblem(short, /must hold at least 24 characters/);
    assert.ok(!short.problems.join('\n').includes('short-secret'), 'the value is never shown');
    assertProblem(
      problemsOf(minimal({ tail: '[admin]\nlisten_addr = "127.0.0.1:9443"\nreadonly_token_env = "SAME"' }), {
        AGENT_GATEWAY_ADMIN_TOKEN: token,
        SAME: token,
      }),
      /read-only token must differ from the admin token/,
    );
  });

  test('TLS paths come in pairs', () => {
    assertProblem(
      problemsOf(minimal({ tail: '[admin]\nlisten_addr = "0.0.0.0:9443"\ntls_cert_path = "a.pem"' }), {
        AGENT_GATEWAY_ADMIN_TOKEN: token,
      }),
      /set both admin\.tls_cert_path and admin\.tls_key_path/,
    );
  });
});
