import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createCa, createServerCertificate } from '../../src/pki/certificates.js';
import { freshDatabase } from '../helpers/db.js';
import type { GatewayProcess } from '../helpers/gateway-process.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { startTestGateway } from '../helpers/sidecar-destinations.js';
import { type SidecarProcess, sidecarArgs, startSidecarProcess } from '../helpers/sidecar-process.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

/**
 * The README's sidecar snippet, as an agent's environment: with exactly those proxy variables, curl and
 * wget, for http:// and https:// URLs, go through the sidecar (and the gateway), not around it. A client
 * that finds no variable it reads connects directly, which on a test machine still "works": so each
 * request must show up as a tunnel in the sidecar's log. The destinations are on 127.0.0.2, outside the
 * snippet's NO_PROXY (localhost, 127.0.0.1, ::1).
 */

const README = fileURLToPath(new URL('../../README.md', import.meta.url));
const HOST = '127.0.0.2';
let pki: TestPki;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let gateway: GatewayProcess;
let sidecar: SidecarProcess;
const servers: Server[] = [];
let httpPort: number;
let httpsPort: number;
let destinationCa: string;

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, HOST, resolve));
  return (server.address() as AddressInfo).port;
}

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  httpPort = await listen(createHttpServer((req, res) => res.end(`plain ${req.url}\n`)));
  const ca = await createCa({ commonName: 'readme-sidecar destination CA' });
  const cert = await createServerCertificate({ ca, dnsNames: [], ipAddresses: [HOST] });
  destinationCa = join(pki.dir, 'destination-ca.pem');
  await writeFile(destinationCa, ca.certPem);
  httpsPort = await listen(
    createHttpsServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => res.end(`tls ${req.url}\n`)),
  );
  const agent = await pki.agent('agent-env');
  await grantLoopbackPorts(db.sql, {
    identity: 'agent-env',
    agentSpki: agent.spkiDer,
    ports: [httpPort, httpsPort],
    host: HOST,
  });
  gateway = await startTestGateway(pki, db.url);
  sidecar = await startSidecarProcess(
    sidecarArgs({ gateway: `127.0.0.1:${gateway.port}`, caPath: pki.caCertPath, agent }, [
      '--gateway-server-name',
      'localhost',
    ]),
  );
});

after(async () => {
  await sidecar?.stop();
  await gateway?.stop();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
  await db?.drop();
  await pki?.cleanup();
});

/** The `export` lines of the README's "Agents behind the sidecar" block, pointed at this sidecar. */
async function readmeExports(): Promise<string> {
  const text = await readFile(README, 'utf8');
  const section = text.slice(text.indexOf('\n## Agents behind the sidecar\n'));
  const block = section.slice(section.indexOf('```sh\n') + 6, section.indexOf('\n```\n'));
  const exports = block.split('\n').filter((line) => line.startsWith('export '));
  assert.ok(exports.length > 0, 'the sidecar section sets proxy variables');
  return exports.join('\n').replaceAll('127.0.0.1:3128', `127.0.0.1:${sidecar.port}`);
}

/** Runs `command` in sh with only PATH and the README's variables in its environment. */
function withReadmeEnv(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return readmeExports().then(
    (exports) =>
      new Promise((resolve) => {
        execFile(
          'sh',
          ['-c', `${exports}\n${command}`],
          { encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' }, timeout: 30_000 },
          (error, stdout, stderr) =>
            resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      }),
  );
}

/**
 * Whether the sidecar logged a tunnel to `authority` after its `mark`-th log line (it logs before any byte
 * reaches the client; the wait only covers the pipe from its stdout to this process).
 */
async function tunnelledSince(mark: number, authority: string): Promise<boolean> {
  const found = () =>
    sidecar.logs.slice(mark).some((l) => l.msg === 'tunnel opened' && l['dest_authority'] === authority);
  for (let waited = 0; waited < 3000 && !found(); waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return found();
}

const cases = [
  { client: 'curl', url: () => `http://${HOST}:${httpPort}/curl`, run: (url: string) => `curl -sS ${url}` },
  {
    client: 'curl',
    url: () => `https://${HOST}:${httpsPort}/curl`,
    run: (url: string) => `curl -sS --cacert ${destinationCa} ${url}`,
  },
  {
    client: 'wget',
    url: () => `http://${HOST}:${httpPort}/wget`,
    run: (url: string) => `wget -q -O - ${url}`,
  },
  {
    client: 'wget',
    url: () => `https://${HOST}:${httpsPort}/wget`,
    run: (url: string) => `wget -q -O - --ca-certificate=${destinationCa} ${url}`,
  },
];

for (const c of cases) {
  test(`${c.client} ${c.url().split(':')[0]}:// with the README's variables goes through the sidecar`, async () => {
    const url = c.url();
    const mark = sidecar.logs.length;
    const r = await withReadmeEnv(c.run(url));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^(plain|tls) \//);
    const authority = new URL(url).host;
    assert.equal(
      await tunnelledSince(mark, authority),
      true,
      `${c.client} went around the sidecar to ${authority}`,
    );
  });
}
