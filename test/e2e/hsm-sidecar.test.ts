import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readClientCertificate } from '../../src/identity/client-certificate.js';
import { encodeOidContent } from '../../src/identity/oid.js';
import { certifyAgentKey } from '../../src/pki/certificates.js';
import { DEFAULT_IDENTITY_EXTENSION_OID } from '../../src/pki/identity-extension.js';
import { fields, runCli } from '../helpers/cli-runner.js';
import { freshDatabase } from '../helpers/db.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { startHttpsDestination, startTestGateway } from '../helpers/sidecar-destinations.js';
import {
  type SidecarProcess,
  sidecarArgs,
  spawnSidecar,
  startSidecarProcess,
} from '../helpers/sidecar-process.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';
import { HARDWARE_HELD, privateKeyFiles, type SoftHsm, startSoftHsm } from '../helpers/softhsm.js';

/** Runs curl to completion; resolves with its exit code and output, never rejects. */
function curl(args: readonly string[], env: NodeJS.ProcessEnv) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'curl',
      args,
      { encoding: 'utf8', env: { PATH: process.env['PATH'], ...env } },
      (error, stdout, stderr) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * The agent key in a PKCS#11 token (SoftHSM2 in its own directory): `agent create --key pkcs11:…` makes
 * the key there and a self-signed certificate the token signs; the sidecar presents that key on its mTLS
 * connection through OpenSSL's PKCS#11 engine, and curl's tunnel runs through it to a real gateway.
 */
describe('sidecar with a token-held agent key', () => {
  const AGENT_PIN = '271828-agent';
  const KEY = 'pkcs11:token=agent-keys;object=agent-hsm';
  let pki: TestPki;
  let hsm: SoftHsm;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let gateway: GatewayProcess;
  let sidecar: SidecarProcess;
  let dest: Awaited<ReturnType<typeof startHttpsDestination>>;
  let env: Record<string, string>;
  let createdOutput: string;
  const certPath = () => join(pki.dir, 'agents', 'agent-hsm.pem');
  const tokenArgs = (key = KEY, cert = certPath()) =>
    sidecarArgs(
      {
        gateway: `127.0.0.1:${gateway.port}`,
        caPath: pki.caCertPath,
        agent: { certPath: cert, keyPath: key },
      },
      ['--gateway-server-name', 'localhost', '--pin-env', 'AGENT_PIN'],
    );

  async function failedStart(args: readonly string[], extraEnv: Record<string, string> = {}) {
    const run = spawnSidecar(args, { ...env, ...extraEnv });
    return { code: await run.exited, stderr: run.stderr(), logs: JSON.stringify(run.logs) };
  }

  before(async () => {
    pki = await createTestPki();
    hsm = await startSoftHsm();
    await hsm.initToken('agent-keys', AGENT_PIN);
    env = { ...hsm.env, AGENT_PIN };
    db = await freshDatabase();
    dest = await startHttpsDestination(pki.dir, 'hsm-sidecar');
    const created = await runCli(
      [
        ...['agent', 'create', '--identity', 'agent-hsm', '--out-dir', join(pki.dir, 'agents')],
        ...['--key', KEY, '--pin-env', 'AGENT_PIN'],
      ],
      { env },
    );
    assert.equal(created.code, 0, created.stdout + created.stderr);
    createdOutput = created.stdout + created.stderr;
    const der = new X509Certificate(await readFile(certPath())).raw;
    const cert = readClientCertificate(der, encodeOidContent(DEFAULT_IDENTITY_EXTENSION_OID));
    assert.equal(cert.identity, 'agent-hsm');
    await grantLoopbackPorts(db.sql, {
      identity: 'agent-hsm',
      agentSpki: Buffer.from(cert.spki),
      ports: [dest.port],
    });
    gateway = await startTestGateway(pki, db.url);
    sidecar = await startSidecarProcess(tokenArgs(), env);
  });

  after(async () => {
    const sidecarCode = await sidecar?.stop();
    const gatewayCode = await gateway?.stop();
    await dest?.close();
    await db?.drop();
    await hsm?.cleanup();
    await pki?.cleanup();
    assert.equal(sidecarCode, 0, `sidecar exit code; stderr: ${sidecar?.stderr()}`);
    assert.equal(gatewayCode, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  test('agent create wrote only a certificate, signed by the token key it certifies', async () => {
    assert.match(
      fields(createdOutput)['private key'] ?? '',
      /^pkcs11:token=agent-keys;serial=\w+;object=agent-hsm;id=.* \(in the token/,
    );
    assert.match(fields(createdOutput)['certificate'] ?? '', /agent-hsm\.pem \(self-signed\)$/);
    const cert = new X509Certificate(await readFile(certPath()));
    assert.ok(cert.verify(cert.publicKey), 'the self-signature verifies with the certificate key');
  });

  test("curl's tunnel runs through the sidecar, which presents the token key to the gateway", async () => {
    const r = await curl(
      ['-sS', '--max-time', '20', '--cacert', dest.caPath, `https://127.0.0.1:${dest.port}/via-token-key`],
      { HTTPS_PROXY: `http://127.0.0.1:${sidecar.port}`, NO_PROXY: '' },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello over tls from hsm-sidecar /via-token-key\n');
    const allowed = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT allowed' && l['dest_authority'] === `127.0.0.1:${dest.port}`,
    );
    assert.equal(allowed['source_identity'], 'agent-hsm');
    assert.equal(allowed['protocol'], 'HTTP/2');
    // The engine prints nothing on success, and the PIN appears nowhere.
    assert.equal(sidecar.stderr(), '');
    assert.ok(!JSON.stringify(sidecar.logs).includes(AGENT_PIN));
  });

  test('SIGHUP with a renewed certificate for the token key: a new connection presents it through the engine', async () => {
    // Renewed by the test CA for the same token key (the CA signs; the token is not asked to).
    const der = new X509Certificate(await readFile(certPath())).raw;
    const spkiDer = Buffer.from(
      readClientCertificate(der, encodeOidContent(DEFAULT_IDENTITY_EXTENSION_OID)).spki,
    );
    const renewed = await certifyAgentKey({
      identity: 'agent-hsm',
      extensionOid: DEFAULT_IDENTITY_EXTENSION_OID,
      issuer: pki.ca,
      key: { spkiDer, signP1363: () => Promise.reject(new Error('the CA signs, not the agent key')) },
    });
    await writeFile(certPath(), renewed.certPem);
    const mark = sidecar.logs.length;
    sidecar.child.kill('SIGHUP');
    const reloaded = await sidecar.waitForLog(
      (l) => sidecar.logs.indexOf(l) >= mark && l.msg.startsWith('credentials reload'),
    );
    assert.equal(reloaded.msg, 'credentials reloaded', JSON.stringify(reloaded));
    assert.equal(reloaded['changed'], true);
    assert.equal(reloaded['gateway_connection'], 'replaced', 'a second token login and engine context work');
    assert.match(String(reloaded['key']), /^pkcs11:token=agent-keys;object=agent-hsm/);
    const r = await curl(
      ['-sS', '--max-time', '20', '--cacert', dest.caPath, `https://127.0.0.1:${dest.port}/after-renewal`],
      { HTTPS_PROXY: `http://127.0.0.1:${sidecar.port}`, NO_PROXY: '' },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello over tls from hsm-sidecar /after-renewal\n');
    assert.equal(sidecar.stderr(), '');
    assert.ok(!JSON.stringify(sidecar.logs).includes(AGENT_PIN));
  });

  test('a wrong PIN stops the sidecar at start with a clear error, exit 2', async () => {
    const r = await failedStart(tokenArgs(), { AGENT_PIN: '999999' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /sidecar\.key_path \(--key\): logging in to token "agent-keys" .* for pkcs11:token=agent-keys;object=agent-hsm failed \(CKR_PIN_INCORRECT\)/,
    );
    assert.match(r.stderr, /\[PKCS11_PIN_INCORRECT\]/);
    assert.ok(!(r.stderr + r.logs).includes('999999'), 'the PIN is not echoed');
  });

  test('a missing token or key object is named by its URI, exit 2', async () => {
    const noObject = await failedStart(tokenArgs('pkcs11:token=agent-keys;object=agent-gone'));
    assert.equal(noObject.code, 2, noObject.stderr);
    assert.match(noObject.stderr, /holds no private key matching pkcs11:token=agent-keys;object=agent-gone/);
    const noToken = await failedStart(tokenArgs('pkcs11:token=elsewhere;object=agent-hsm'));
    assert.equal(noToken.code, 2, noToken.stderr);
    assert.match(noToken.stderr, /no token matches pkcs11:token=elsewhere;object=agent-hsm/);
    assert.ok(!(noObject.stderr + noToken.stderr).includes(AGENT_PIN));
  });

  test("a certificate of another key is refused at start: the token key must be the certificate's", async () => {
    const other = await pki.agent('agent-file');
    const r = await failedStart(tokenArgs(KEY, other.certPath));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /does not match the private key pkcs11:token=agent-keys;object=agent-hsm/);
  });

  test('token settings that cannot work are refused', async () => {
    const withPin = await failedStart(tokenArgs(`${KEY}?pin-value=${AGENT_PIN}`));
    assert.equal(withPin.code, 2);
    assert.match(withPin.stderr, /pin-value is refused/);
    assert.ok(!withPin.stderr.includes(AGENT_PIN), 'the PIN typed into the URI is not echoed');
    const noModule = await failedStart(tokenArgs(), { AGENT_GATEWAY_PKCS11_MODULE: '' });
    assert.equal(noModule.code, 2);
    assert.match(noModule.stderr, /sidecar\.pkcs11_module: required for a pkcs11: key/);
    const noEngine = await failedStart([...tokenArgs(), '--pkcs11-engine', join(pki.dir, 'no-engine.so')]);
    assert.equal(noEngine.code, 2);
    assert.match(
      noEngine.stderr,
      /OpenSSL PKCS#11 engine .*no-engine\.so" is missing.*libengine-pkcs11-openssl/,
    );
  });

  test('the agent key never exists as a file and the token will not hand it out', async () => {
    assert.deepEqual(hsm.privateKeyProtection('agent-keys', AGENT_PIN, 'agent-hsm'), [HARDWARE_HELD]);
    assert.deepEqual(await privateKeyFiles([hsm.dir, join(pki.dir, 'agents')]), []);
  });
});
