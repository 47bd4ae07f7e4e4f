import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import type { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { packageVersion } from '../../src/version.js';
import { http1Connect, readAll } from '../helpers/clients.js';
import { freshDatabase } from '../helpers/db.js';
import {
  CLI_ARGV,
  CLI_PATH,
  type GatewayProcess,
  type LogLine,
  startGatewayProcess,
  writeGatewayConfig,
} from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';
import { INSPECTOR_PORT, listeningPorts } from '../helpers/process-sockets.js';
import { proxyConnect, sidecarArgs, startSidecarProcess } from '../helpers/sidecar-process.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

/**
 * Real signals to the real CLI, gateway and sidecar alike: SIGHUP reloads and never kills, SIGUSR1 and
 * SIGUSR2 are ignored (logged), SIGUSR1 opens no inspector port, and SIGTERM still drains afterwards.
 * Each process is run the two ways it is launched: as the shebang runs it (`--disable-sigusr1`) and as
 * `node dist/cli/main.js` (no flag: the JavaScript listener alone must keep the inspector shut).
 */
const LAUNCHES = [
  // With the flag Node keeps SIGUSR1 blocked: it is never delivered, so nothing is logged for it.
  { name: 'as its shebang runs it (--disable-sigusr1)', cli: CLI_ARGV, sigusr1Logged: false },
  { name: 'as node dist/cli/main.js (no flag)', cli: [CLI_PATH], sigusr1Logged: true },
] as const;

interface Watched {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  waitForLog(predicate: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
}

/** Sends `signal` and waits for the line the process logs for it (after `mark`). */
async function signalAndWait(p: Watched, signal: NodeJS.Signals, msg: string): Promise<LogLine> {
  const mark = p.logs.length;
  p.child.kill(signal);
  return p.waitForLog(
    (l) =>
      p.logs.indexOf(l) >= mark && l.msg === msg && (l['signal'] === undefined || l['signal'] === signal),
    `${msg} after ${signal}`,
  );
}

/** SIGHUP, SIGUSR1, SIGUSR2 in turn; the process survives each and opens no new listening port. */
async function survivesSignals(p: Watched, reloaded: string, sigusr1Logged: boolean): Promise<void> {
  const pid = p.child.pid!;
  const portsBefore = await listeningPorts(pid);
  assert.ok(portsBefore.length > 0, 'the process listens');
  assert.ok(!portsBefore.includes(INSPECTOR_PORT));

  const hup = await signalAndWait(p, 'SIGHUP', 'signal received');
  assert.equal(hup['signal'], 'SIGHUP');
  await p.waitForLog((l) => p.logs.indexOf(l) > p.logs.indexOf(hup) && l.msg === reloaded, reloaded);
  const mark = p.logs.length;
  p.child.kill('SIGUSR1');
  // SIGUSR2's line comes from a later turn than SIGUSR1's handling, whichever way it went.
  const ignored = await signalAndWait(p, 'SIGUSR2', 'signal ignored');
  assert.equal(ignored['signal'], 'SIGUSR2');
  assert.equal(p.child.exitCode, null, 'still running');
  assert.equal(p.child.signalCode, null);
  // The inspector would have opened within the turn that handled SIGUSR1; the log line of SIGUSR2 came
  // after it. The process's own sockets, not "is 9229 open on this machine": another test may use it.
  assert.deepEqual(await listeningPorts(pid), portsBefore, 'no new listening socket (no inspector)');
  const usr1 = p.logs.slice(mark).filter((l) => l.msg === 'signal ignored' && l['signal'] === 'SIGUSR1');
  assert.equal(usr1.length, sigusr1Logged ? 1 : 0, JSON.stringify(p.logs.slice(mark)));
}

describe('signals', () => {
  let pki: TestPki;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let agent: TestAgent;
  let configPath: string;
  let destination: string;

  before(async () => {
    pki = await createTestPki();
    db = await freshDatabase();
    echo = await startEchoServer();
    agent = await pki.agent('agent-signals');
    destination = `127.0.0.1:${echo.port}`;
    await grantLoopbackPorts(db.sql, {
      identity: 'agent-signals',
      agentSpki: agent.spkiDer,
      ports: [echo.port],
    });
    configPath = await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
    });
  });

  after(async () => {
    await echo?.close();
    await db?.drop();
    await pki?.cleanup();
  });

  for (const launch of LAUNCHES) {
    test(`gateway, ${launch.name}: survives SIGHUP/SIGUSR1/SIGUSR2, then drains on SIGTERM`, async () => {
      const gateway = await startGatewayProcess(configPath, {}, launch.cli);
      try {
        const listening = gateway.logs.find((l) => l.msg === 'listening')!;
        assert.equal(listening['version'], packageVersion());
        assert.equal(listening['node_version'], process.versions.node);
        assert.equal(listening['openssl_version'], process.versions.openssl);
        assert.equal(listening['reuse_port'], true);

        await survivesSignals(gateway, 'config reloaded', launch.sigusr1Logged);
        await drainsAfterwards(gateway);
      } finally {
        await gateway.stop('SIGKILL');
      }
    });

    test(`sidecar, ${launch.name}: survives SIGHUP/SIGUSR1/SIGUSR2, then drains on SIGTERM`, async () => {
      const gateway = await startGatewayProcess(configPath);
      const sidecar = await startSidecarProcess(
        sidecarArgs({ gateway: `127.0.0.1:${gateway.port}`, caPath: pki.caCertPath, agent }, [
          '--gateway-server-name',
          'localhost',
        ]),
        {},
        launch.cli,
      );
      try {
        const listening = sidecar.logs.find((l) => l.msg === 'listening')!;
        assert.equal(listening['version'], packageVersion());
        assert.equal(listening['node_version'], process.versions.node);
        assert.equal(listening['openssl_version'], process.versions.openssl);

        await survivesSignals(sidecar, 'credentials reloaded', launch.sigusr1Logged);
        const reloaded = sidecar.logs.find((l) => l.msg === 'credentials reloaded')!;
        assert.equal(reloaded['changed'], false, 'the same files: nothing to replace');

        // A tunnel after the signals, open across SIGTERM: the drain lets it finish.
        const tunnel = await proxyConnect({ port: sidecar.port }, destination);
        assert.equal(tunnel.status, 200);
        const done = await drainsWithOpenTunnel(sidecar, tunnel.socket, tunnel.head);
        assert.equal(done['tunnels_cut'], 0);
      } finally {
        await sidecar.stop('SIGKILL');
        await gateway.stop();
      }
    });
  }

  /** An HTTP/1.1 tunnel open across SIGTERM finishes; the gateway exits 0 with `drained`. */
  async function drainsAfterwards(gateway: GatewayProcess): Promise<void> {
    const tunnel = await http1Connect(gateway.port, { caPath: pki.caCertPath, agent }, destination);
    assert.equal(tunnel.status, 200);
    const done = await drainsWithOpenTunnel(gateway, tunnel.socket, tunnel.rest);
    assert.equal(done['result'], 'drained');
  }
});

/** SIGTERM with `tunnel` open: it still echoes during the drain; exit 0; the `shutdown complete` line. */
async function drainsWithOpenTunnel(
  p: Watched & { readonly exited: Promise<number | null> },
  tunnel: Duplex,
  head: Buffer,
): Promise<LogLine> {
  const mark = p.logs.length;
  p.child.kill('SIGTERM');
  await p.waitForLog((l) => p.logs.indexOf(l) >= mark && l.msg === 'shutdown started');
  const reply = readAll(tunnel, head);
  tunnel.end('through the draining process');
  assert.equal((await reply).toString(), 'through the draining process');
  assert.equal(await p.exited, 0);
  return p.waitForLog((l) => l.msg === 'shutdown complete');
}
