import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readAll } from '../helpers/clients.js';
import { closedPort } from '../helpers/loopback-servers.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import { proxyConnect, sidecarArgs, spawnSidecar, startSidecarProcess } from '../helpers/sidecar-process.js';

/**
 * What an operator sees when starting the sidecar with something wrong: the built CLI, no gateway
 * needed (a closed loopback port stands in for a gateway that is down).
 */
describe('sidecar command line', () => {
  let pki: TestPki;
  let alpha: TestAgent;
  let other: TestAgent;
  let noExtension: TestAgent;
  let downPort: number;

  before(async () => {
    pki = await createTestPki();
    alpha = await pki.agent('agent-alpha');
    other = await pki.agent('agent-other');
    noExtension = await pki.agentWithoutExtension();
    downPort = await closedPort();
  });

  after(async () => {
    await pki?.cleanup();
  });

  const baseArgs = (agent: { certPath: string; keyPath: string }, extra: readonly string[] = []) =>
    sidecarArgs({ gateway: `127.0.0.1:${downPort}`, caPath: pki.caCertPath, agent }, extra);

  async function failedStart(args: readonly string[], env: NodeJS.ProcessEnv = {}) {
    const run = spawnSidecar(args, env);
    const code = await run.exited;
    return { code, stderr: run.stderr() };
  }

  test('a certificate with the key of another certificate is refused', async () => {
    const r = await failedStart(baseArgs({ certPath: alpha.certPath, keyPath: other.keyPath }));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /does not match the private key/);
  });

  test('unreadable and wrong files are named, all in one run', async () => {
    const notAKey = join(pki.dir, 'not-a-key.pem');
    await writeFile(notAKey, 'hello');
    const r = await failedStart([
      '--gateway',
      `127.0.0.1:${downPort}`,
      '--gateway-ca',
      join(pki.dir, 'missing-ca.pem'),
      '--cert',
      alpha.keyPath,
      '--key',
      notAKey,
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /gateway_ca_path \(--gateway-ca\): cannot read .*missing-ca\.pem.*: no such file/);
    assert.match(r.stderr, /sidecar\.cert_path: .* holds no PEM certificate/);
    assert.match(r.stderr, /sidecar\.key_path: .*not a PEM private key/);
  });

  test('an unreadable key file (permissions) is reported', {
    skip: process.getuid?.() === 0 ? 'root can read any file' : false,
  }, async () => {
    const locked = join(pki.dir, 'locked-key.pem');
    await writeFile(locked, 'x');
    await chmod(locked, 0o000);
    const r = await failedStart(baseArgs({ certPath: alpha.certPath, keyPath: locked }));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /cannot read .*locked-key\.pem.*: permission denied/);
  });

  test('a certificate without the identity extension starts with a warning', async () => {
    const s = await startSidecarProcess(baseArgs(noExtension));
    try {
      const warned = await s.waitForLog((l) => l.msg === 'agent certificate has no identity extension');
      assert.equal(warned['level'], 'warn');
      // stderr is a separate pipe from the JSON log on stdout: its line may arrive a moment later.
      for (let i = 0; i < 100 && !s.stderr().includes('warning:'); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(s.stderr(), /warning: .* has no identity extension 1\.3\.6\.1\.4\.1\.57264\.1\.1/);
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  test('a non-loopback listen address needs --allow-non-loopback', async () => {
    const r = await failedStart(baseArgs(alpha, ['--listen', '0.0.0.0:0']));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--listen: 0\.0\.0\.0 is not a loopback address.*--allow-non-loopback/);
  });

  test('the gateway unreachable: 502 with a body that says so, and the sidecar keeps running', async () => {
    const s = await startSidecarProcess(baseArgs(alpha));
    try {
      for (let i = 0; i < 2; i++) {
        const t = await proxyConnect({ port: s.port }, '127.0.0.1:443');
        assert.equal(t.status, 502);
        const body = (await readAll(t.socket, t.head)).toString();
        assert.match(
          body,
          /^sidecar: cannot reach the agent-gateway at 127\.0\.0\.1:\d+: connection refused/,
        );
      }
      const failed = await s.waitForLog((l) => l.msg === 'gateway connect failed');
      assert.equal(failed['level'], 'warn');
    } finally {
      assert.equal(await s.stop(), 0);
    }
  });

  test('a config file with a [sidecar] table works; flags override it; unknown keys are errors', async () => {
    const good = join(pki.dir, 'sidecar.toml');
    await writeFile(
      good,
      [
        '[sidecar]',
        `gateway_addr = "127.0.0.1:${downPort}"`,
        `gateway_ca_path = ${JSON.stringify(pki.caCertPath)}`,
        `cert_path = ${JSON.stringify(alpha.certPath)}`,
        `key_path = ${JSON.stringify(alpha.keyPath)}`,
        'listen_addr = "127.0.0.1:1"',
        '',
      ].join('\n'),
    );
    const s = await startSidecarProcess(['--config', good, '--listen', '127.0.0.1:0']);
    assert.notEqual(s.port, 1);
    assert.equal(await s.stop(), 0);

    const bad = join(pki.dir, 'bad-sidecar.toml');
    await writeFile(bad, '[sidecar]\ngateway_adr = "x:1"\n[server]\nlisten_addr = "0.0.0.0:1"\n');
    const r = await failedStart(['--config', bad]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown key "gateway_adr" in \[sidecar\]; did you mean "gateway_addr"\?/);
    assert.match(r.stderr, /"server" in \[root\]: a sidecar config file holds only a \[sidecar\] table/);
  });
});
