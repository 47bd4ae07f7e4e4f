import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import postgres from 'postgres';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/devdb/embedded.js';
import { migrate } from '../../src/registry/migrate.js';
import { type ClientTls, http1Connect, readAll } from '../helpers/clients.js';
import {
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { createPrincipal, grantPermission, grantScope } from '../helpers/registry-rows.js';

/**
 * The registry database goes away while the gateway runs. It has its own embedded PostgreSQL so it
 * can be stopped without disturbing other test files: CONNECTs must be denied (fail closed), the
 * gateway must not crash, and it must allow again once the database is back.
 */
let pki: TestPki;
let dir: string;
let db: EmbeddedPostgres;
let gateway: GatewayProcess;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let tls: ClientTls;
let destination: string;

before(async () => {
  pki = await createTestPki();
  dir = await mkdtemp(join(tmpdir(), 'ag-outage-'));
  await chmod(dir, 0o755);
  db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true });
  echo = await startEchoServer();
  destination = `127.0.0.1:${echo.port}`;
  const agent = await pki.agent('agent-outage');
  tls = { caPath: pki.caCertPath, agent };
  const sql = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await migrate(sql);
    const principal = await createPrincipal(sql, 'org-outage');
    await grantScope(sql, principal.keyId, destination);
    await grantPermission(sql, {
      permissionId: 'perm-outage',
      principal,
      identity: 'agent-outage',
      agentSpki: agent.spkiDer,
      destination,
    });
  } finally {
    await sql.end();
  }
  gateway = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraPolicy: 'connect_timeout_ms = 1000\npool_acquire_timeout_ms = 500\nquery_timeout_ms = 500',
    }),
  );
});

after(async () => {
  await gateway?.stop();
  await db?.stop();
  await echo?.close();
  await rm(dir, { recursive: true, force: true });
  await pki?.cleanup();
});

async function echoThrough(): Promise<number> {
  const res = await http1Connect(gateway.port, tls, destination);
  if (res.status === 200) {
    const reply = readAll(res.socket, res.rest);
    res.socket.end('x');
    assert.equal((await reply).toString(), 'x');
  } else {
    res.socket.destroy();
  }
  return res.status;
}

test('database down: CONNECT denied, gateway alive; database back: allowed again', async () => {
  assert.equal(await echoThrough(), 200);

  await db.stop();
  const deniedBefore = gateway.logs.length;
  for (let i = 0; i < 3; i++) assert.equal(await echoThrough(), 403);
  // The client may see its 403 before the log line reaches us: wait for the third denial.
  const isDenial = (l: LogLine) => l.msg === 'CONNECT denied' && gateway.logs.indexOf(l) >= deniedBefore;
  await gateway.waitForLog((l) => isDenial(l) && gateway.logs.filter(isDenial).length === 3);
  const denials = gateway.logs.filter(isDenial);
  assert.equal(denials.length, 3);
  for (const d of denials) assert.match(String(d['deny_reason']), /^policy_(error|timeout)$/);
  assert.equal(gateway.child.exitCode, null, 'the gateway is still running');

  db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), persistent: true, port: db.port });
  // The pool reconnects on its own; the first attempt after the restart may still see the old socket.
  let status = 0;
  for (let attempt = 0; attempt < 20 && status !== 200; attempt++) status = await echoThrough();
  assert.equal(status, 200);
});
