import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { freshDatabase } from '../helpers/db.js';
import { startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';

/** A port that was free a moment ago (the gateways need a fixed one to share). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** One full mTLS handshake; resolves 'ok' or the error code, never rejects. */
function handshake(port: number, pki: TestPki, agent: TestAgent): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: pki.ca.certPem,
      cert: agent.certPem,
      key: agent.keyPem,
      ALPNProtocols: ['http/1.1'],
    });
    socket.once('secureConnect', () => {
      socket.destroy();
      resolve('ok');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

/**
 * The rolling restart of the README: start the new process on the same port (SO_REUSEPORT), wait for its
 * `listening` line, SIGTERM the old one. A client connecting in a loop the whole time is never refused.
 */
describe('rolling restart on one port', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let agent: TestAgent;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    agent = await pki.agent('agent-restart');
  });

  after(async () => {
    await db?.drop();
    await pki?.cleanup();
  });

  async function configOnFixedPort(port: number, extraServer = ''): Promise<string> {
    const path = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraServer,
    });
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('listen_addr = "127.0.0.1:0"', `listen_addr = "127.0.0.1:${port}"`));
    return path;
  }

  test('start new, wait for listening, SIGTERM old: no connection refused', {
    timeout: 120_000,
  }, async () => {
    const port = await freePort();
    const config = await configOnFixedPort(port);
    const old = await startGatewayProcess(config);
    assert.equal(old.port, port);

    // The client: one handshake after the other, bounded in count, until told to stop.
    const outcomes = new Map<string, number>();
    let attempts = 0;
    let stop = false;
    const phase = { name: 'old only' };
    const byPhase = new Map<string, number>();
    const client = (async () => {
      while (!stop && attempts < 20_000) {
        attempts++;
        const outcome = await handshake(port, pki, agent);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        if (outcome === 'ok') byPhase.set(phase.name, (byPhase.get(phase.name) ?? 0) + 1);
      }
    })();
    const okIn = async (name: string, count: number) => {
      while ((byPhase.get(name) ?? 0) < count && !stop && attempts < 20_000) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    };

    await okIn('old only', 20);
    phase.name = 'both';
    const next = await startGatewayProcess(config);
    assert.equal(next.port, port, 'the new process bound the same port');
    await okIn('both', 20);
    phase.name = 'old draining';
    old.child.kill('SIGTERM');
    assert.equal(await old.exited, 0);
    phase.name = 'new only';
    await okIn('new only', 50);
    stop = true;
    await client;
    try {
      assert.equal(outcomes.get('ECONNREFUSED') ?? 0, 0, JSON.stringify([...outcomes]));
      assert.ok((byPhase.get('new only') ?? 0) >= 50, 'the new process serves after the old one left');
      assert.deepEqual(
        [...outcomes.keys()],
        ['ok'],
        `every handshake completed: ${JSON.stringify([...outcomes])}`,
      );
    } finally {
      assert.equal(await next.stop(), 0);
    }
  });

  test('with server.reuse_port = false a second process cannot bind the port', async () => {
    const port = await freePort();
    const config = await configOnFixedPort(port, 'reuse_port = false');
    const first = await startGatewayProcess(config);
    try {
      await assert.rejects(startGatewayProcess(config), /exited \(code 1\) before listening/);
    } finally {
      assert.equal(await first.stop(), 0);
    }
  });
});
