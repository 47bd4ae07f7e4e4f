import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { ConfigError } from '../../src/config/errors.js';
import { defaultEnginePath } from '../../src/pkcs11/settings.js';
import { isLoopbackHost, resolveSidecarConfig, type SidecarConfigInput } from '../../src/sidecar/config.js';

const REQUIRED = {
  gateway_addr: 'gateway.internal:8443',
  gateway_ca_path: 'ca.pem',
  cert_path: 'agent.pem',
  key_path: 'agent-key.pem',
};

function resolve(input: Partial<SidecarConfigInput>) {
  return resolveSidecarConfig({
    fileDocument: undefined,
    source: 'test',
    overrides: {},
    env: {},
    ...input,
  });
}

function problems(input: Partial<SidecarConfigInput>): readonly string[] {
  try {
    resolve(input);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail('expected a ConfigError');
}

describe('sidecar config', () => {
  test('flags alone: defaults fill the rest, listen defaults to 127.0.0.1:3128', () => {
    const c = resolve({ overrides: REQUIRED });
    assert.equal(c.gateway.authority, 'gateway.internal:8443');
    assert.equal(c.gatewayServerName, 'gateway.internal');
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 3128 });
    assert.equal(c.unixSocket, undefined);
    assert.equal(c.proxyCredential, undefined);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.shutdownGraceMs, 10_000);
    assert.equal(c.keepaliveIntervalMs, 30_000);
  });

  test('a gateway without a port gets 443, as destinations do', () => {
    assert.equal(
      resolve({ overrides: { ...REQUIRED, gateway_addr: 'GW.example' } }).gateway.authority,
      'gw.example:443',
    );
  });

  test('the [sidecar] table of a file, with flags taking precedence', () => {
    const doc = parseToml(
      [
        '[sidecar]',
        'gateway_addr = "[::1]:9443"',
        'gateway_ca_path = "ca.pem"',
        'cert_path = "agent.pem"',
        'key_path = "key.pem"',
        'gateway_server_name = "gateway.test"',
        'listen_addr = "127.0.0.1:4000"',
        'unix_socket_path = "/run/agent/proxy.sock"',
        'unix_socket_mode = 0o660',
        'shutdown_grace_s = 3',
      ].join('\n'),
    );
    const c = resolve({ fileDocument: doc, overrides: { listen_addr: '[::1]:5000' } });
    assert.equal(c.gateway.authority, '[::1]:9443');
    assert.equal(c.gatewayServerName, 'gateway.test');
    assert.deepEqual(c.listen, { host: '::1', port: 5000 });
    assert.deepEqual(c.unixSocket, { path: '/run/agent/proxy.sock', mode: 0o660 });
    assert.equal(c.shutdownGraceMs, 3000);
  });

  test('a Unix socket alone means no TCP listener; the mode may be octal text', () => {
    const c = resolve({
      overrides: { ...REQUIRED, unix_socket_path: '/tmp/s.sock', unix_socket_mode: '0640' },
    });
    assert.equal(c.listen, undefined);
    assert.deepEqual(c.unixSocket, { path: '/tmp/s.sock', mode: 0o640 });
  });

  test('missing required settings name both the flag and the key', () => {
    const found = problems({ overrides: {} });
    assert.ok(
      found.includes(
        'sidecar.gateway_addr: required; pass --gateway or set it in the [sidecar] table of --config',
      ),
    );
    assert.equal(
      found.filter((p) => p.endsWith('required; pass --cert or set it in the [sidecar] table of --config'))
        .length,
      1,
    );
    assert.equal(found.length, 4);
  });

  test('problems name the flag when a flag set the value, the key otherwise', () => {
    const fromFlag = problems({ overrides: { ...REQUIRED, listen_addr: 'nonsense' } });
    assert.ok(
      fromFlag.some((p) => p.startsWith('--listen: "nonsense" has no port')),
      fromFlag.join('\n'),
    );
    const fromFile = problems({ fileDocument: { sidecar: { ...REQUIRED, listen_addr: 'nonsense' } } });
    assert.ok(
      fromFile.some((p) => p.startsWith('sidecar.listen_addr: "nonsense" has no port')),
      fromFile.join('\n'),
    );
  });

  test('non-loopback listening needs allow_non_loopback', () => {
    const found = problems({ overrides: { ...REQUIRED, listen_addr: '0.0.0.0:3128' } });
    assert.match(found[0] ?? '', /0\.0\.0\.0 is not a loopback address/);
    const c = resolve({ overrides: { ...REQUIRED, listen_addr: '0.0.0.0:3128', allow_non_loopback: true } });
    assert.equal(c.listen?.host, '0.0.0.0');
  });

  test('proxy credential and key passphrase come from the environment, never echoed', () => {
    const c = resolve({
      overrides: { ...REQUIRED, proxy_auth_env: 'AUTH', key_passphrase_env: 'PASS' },
      env: { AUTH: 'agent:pa:ss', PASS: 'pp' },
    });
    assert.deepEqual(c.proxyCredential, { user: 'agent', password: 'pa:ss' });
    assert.equal(c.keyPassphrase, 'pp');
    for (const bad of ['nocolon-secret', ':secret-only', 'user-only:']) {
      const found = problems({ overrides: { ...REQUIRED, proxy_auth_env: 'AUTH' }, env: { AUTH: bad } });
      assert.equal(found.length, 1);
      assert.match(found[0]!, /--proxy-auth-env: environment variable AUTH must hold "user:password"/);
      assert.ok(!found[0]!.includes(bad), 'the secret is not echoed');
    }
    assert.match(
      problems({ overrides: { ...REQUIRED, key_passphrase_env: 'PASS' } })[0] ?? '',
      /environment variable PASS is not set/,
    );
  });

  test('every problem is reported in one run, including unknown keys and other tables', () => {
    const found = problems({
      fileDocument: {
        sidecar: {
          ...REQUIRED,
          gateway_addr: 'a:b:c',
          log_level: 'loud',
          shutdown_grace_s: -1,
          listn_addr: 'x',
        },
        server: {},
      },
    });
    assert.ok(
      found.some((p) => p.includes('unknown key "listn_addr" in [sidecar]; did you mean "listen_addr"?')),
    );
    assert.ok(found.some((p) => p.startsWith('unknown table or key "server" in [root]')));
    assert.ok(found.some((p) => p.startsWith('sidecar.log_level: must be one of')));
    assert.ok(found.some((p) => p.startsWith('sidecar.shutdown_grace_s: must be >= 0')));
    assert.ok(found.some((p) => p.startsWith('sidecar.gateway_addr: destination "a:b:c"')));
  });

  test('a file without a [sidecar] table says so', () => {
    assert.deepEqual(problems({ fileDocument: {} }).slice(0, 1), [
      'required table is missing: add a [sidecar] section',
    ]);
  });

  test('loopback hosts', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.ok(isLoopbackHost(host), host);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1'])
      assert.ok(!isLoopbackHost(host), host);
  });
});

const URI = 'pkcs11:token=agent-keys;object=agent-alpha';
const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const BASE = { ...REQUIRED, key_path: undefined };

describe('sidecar config: an agent key in a PKCS#11 token', () => {
  test("a pkcs11: key with its PIN variable and module: the PIN is read, the engine defaults to Debian's", () => {
    const c = resolve({
      overrides: { ...BASE, key_path: URI, pin_env: 'AGENT_PIN', pkcs11_module: MODULE },
      env: { AGENT_PIN: '1234' },
    });
    assert.deepEqual(c.keyToken, {
      uri: URI,
      pin: '1234',
      modulePath: MODULE,
      enginePath: defaultEnginePath(),
    });
    assert.equal(c.keyPassphrase, undefined);
  });

  test('the module may come from AGENT_GATEWAY_PKCS11_MODULE, the file may set everything', () => {
    const fromEnv = resolve({
      overrides: { ...BASE, key_path: URI, pin_env: 'AGENT_PIN' },
      env: { AGENT_PIN: '1234', AGENT_GATEWAY_PKCS11_MODULE: MODULE },
    });
    assert.equal(fromEnv.keyToken?.modulePath, MODULE);
    const fromFile = resolve({
      fileDocument: {
        sidecar: {
          ...BASE,
          key_path: URI,
          pin_env: 'P',
          pkcs11_module: MODULE,
          pkcs11_engine: '/opt/pkcs11.so',
        },
      },
      env: { P: 'x' },
    });
    assert.equal(fromFile.keyToken?.enginePath, '/opt/pkcs11.so');
  });

  test('a token key needs a PIN variable and a module, and takes no passphrase; the PIN is never echoed', () => {
    const found = problems({
      overrides: { ...BASE, key_path: URI, key_passphrase_env: 'PASS' },
      env: { PASS: 'pp' },
    });
    assert.ok(
      found.some((p) => p.startsWith('--key-passphrase-env: a token key has no passphrase')),
      found.join('\n'),
    );
    assert.ok(
      found.some((p) => p.startsWith('sidecar.pin_env: required for a pkcs11: key; pass --pin-env VAR')),
    );
    assert.ok(found.some((p) => p.startsWith('sidecar.pkcs11_module: required for a pkcs11: key')));
    const unset = problems({
      overrides: { ...BASE, key_path: URI, pin_env: 'AGENT_PIN', pkcs11_module: MODULE },
    });
    assert.deepEqual(unset, ['--pin-env: environment variable AGENT_PIN is not set or is empty']);
  });

  test('a URI the parser refuses is a problem of --key, without the value', () => {
    const found = problems({
      overrides: { ...BASE, key_path: `${URI}?pin-value=s3cret99`, pin_env: 'P', pkcs11_module: MODULE },
      env: { P: 'x' },
    });
    assert.equal(found.length, 1);
    assert.match(found[0] ?? '', /^--key: not a usable PKCS#11 URI: pin-value is refused/);
    assert.ok(!found[0]?.includes('s3cret99'));
  });

  test('token settings with a key file are mistakes, reported as such', () => {
    const found = problems({
      overrides: {
        ...BASE,
        key_path: 'agent-key.pem',
        pin_env: 'P',
        pkcs11_module: MODULE,
        pkcs11_engine: '/e.so',
      },
      env: { P: 'x' },
    });
    assert.deepEqual(found, [
      '--pin-env: applies only to a pkcs11: key, and --key is a key file',
      '--pkcs11-module: applies only to a pkcs11: key, and --key is a key file',
      '--pkcs11-engine: applies only to a pkcs11: key, and --key is a key file',
    ]);
    // The module variable alone is environment, not a mistake: it may be set for the CLI's commands.
    const c = resolve({
      overrides: { ...BASE, key_path: 'agent-key.pem' },
      env: { AGENT_GATEWAY_PKCS11_MODULE: MODULE },
    });
    assert.equal(c.keyToken, undefined);
  });
});
