import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startGatewayWithCliPki } from '../helpers/cli-gateway.js';
import { type CliResult, fields, runCli } from '../helpers/cli-runner.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { startHttpServer } from '../helpers/loopback-servers.js';
import { type SidecarProcess, startSidecarProcess } from '../helpers/sidecar-process.js';
import { privateKeyFiles } from '../helpers/softhsm.js';
import { type SoftwareTpm, startSoftwareTpm } from '../helpers/swtpm.js';

/**
 * The same URIs against a TPM: swtpm behind tpm2-abrmd, as a PKCS#11 token through tpm2-pkcs11. The
 * principal key and the agent key are generated in the TPM; a permission signed there lets curl's tunnel
 * through a sidecar that presents the TPM-held agent key to the real gateway.
 */
describe('principal and agent keys in a TPM (swtpm, tpm2-abrmd, tpm2-pkcs11)', () => {
  const PIN = 'tpm-user-pin-1';
  let tpm: SoftwareTpm;
  let db: FreshDatabase;
  let dir: string;
  let gateway: GatewayProcess;
  let sidecar: SidecarProcess | undefined;
  let http: { port: number; close(): Promise<void> };
  let env: Record<string, string>;
  const path = (name: string) => join(dir, name);
  const outputs: CliResult[] = [];

  async function ok(...args: string[]): Promise<CliResult> {
    const r = await runCli(args, { env });
    outputs.push(r);
    assert.equal(r.code, 0, `agent-gateway ${args.join(' ')}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    return r;
  }

  before(async () => {
    tpm = await startSoftwareTpm();
    await tpm.addToken('tpm-keys', PIN);
    db = await freshDatabase();
    dir = await mkdtemp(join(tmpdir(), 'ag-hsm-tpm-'));
    env = { AGENT_GATEWAY_DATABASE_URL: db.url, TPM_PIN: PIN, ...tpm.env };
    http = await startHttpServer('tpm-dest');
    gateway = await startGatewayWithCliPki(ok, dir, db.url);
  });

  after(async () => {
    const sidecarCode = await sidecar?.stop();
    const gatewayCode = await gateway?.stop();
    await http?.close();
    await db?.drop();
    await tpm?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
    assert.equal(sidecarCode, 0, `sidecar exit code; stderr: ${sidecar?.stderr()}`);
    assert.equal(gatewayCode, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  test('a TPM-signed permission for a TPM-held agent key lets curl through the sidecar', async () => {
    const principal = 'pkcs11:token=tpm-keys;object=org-tpm';
    const agentKey = 'pkcs11:token=tpm-keys;object=agent-tpm';
    const pinFlag = ['--pin-env', 'TPM_PIN'];
    await ok(
      'principal',
      'create-key',
      '--out',
      principal,
      '--public-out',
      path('org-tpm.pub.pem'),
      ...pinFlag,
    );
    await ok('principal', 'register', '--key-id', 'org-tpm', '--key', principal, ...pinFlag);
    await ok('scope', 'grant', '--key-id', 'org-tpm', '--destination', `127.0.0.1:${http.port}`);
    const agent = await ok(
      ...['agent', 'create', '--identity', 'agent-tpm', '--out-dir', path('agents'), '--key', agentKey],
      ...pinFlag,
    );
    assert.match(fields(agent.stdout)['private key'] ?? '', /^pkcs11:token=tpm-keys;.*\(in the token/);
    await ok(
      ...['permission', 'grant', '--key-id', 'org-tpm', '--key', principal, ...pinFlag],
      ...['--agent-cert', path('agents/agent-tpm.pem'), '--destination', `127.0.0.1:${http.port}`],
    );
    assert.match((await ok('registry', 'verify')).stdout, /no problems/);

    sidecar = await startSidecarProcess(
      [
        ...['--gateway', `127.0.0.1:${gateway.port}`, '--gateway-ca', path('pki/ca.pem')],
        ...['--gateway-server-name', 'localhost', '--cert', path('agents/agent-tpm.pem')],
        ...['--key', agentKey, ...pinFlag, '--listen', '127.0.0.1:0'],
      ],
      env,
    );
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(
        'curl',
        [
          '-sS',
          '--max-time',
          '20',
          '-p',
          '--proxy',
          `http://127.0.0.1:${sidecar?.port}`,
          `http://127.0.0.1:${http.port}/tpm`,
        ],
        { encoding: 'utf8' },
        (error, stdout, stderr) => resolve({ code: error ? 1 : 0, stdout, stderr }),
      ),
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello from tpm-dest /tpm\n');
    const allowed = await gateway.waitForLog(
      (l) => l.msg === 'CONNECT allowed' && l['source_identity'] === 'agent-tpm',
    );
    assert.equal(allowed['signing_key_id'], 'org-tpm');
    for (const out of outputs) assert.ok(!(out.stdout + out.stderr).includes(PIN));
    assert.ok(!sidecar.stderr().includes(PIN));
    // tpm2-pkcs11 keeps keys wrapped by the TPM in its store: no usable private key file there either.
    assert.deepEqual(await privateKeyFiles([tpm.dir, path('agents')]), []);
  });
});
