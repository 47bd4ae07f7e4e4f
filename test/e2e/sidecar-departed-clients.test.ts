import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { within } from '../helpers/bounded.js';
import { type GatewayProcess, type LogLine, startGatewayProcess } from '../helpers/gateway-process.js';
import { type GrantedRegistry, grantedRegistry } from '../helpers/granted-registry.js';
import { type CountingServer, startCountingServer, startEchoServer } from '../helpers/loopback-servers.js';
import {
  proxyConnect,
  type SidecarProcess,
  sidecarArgs,
  startSidecarProcess,
} from '../helpers/sidecar-process.js';

/** The identity's max_tunnels_per_identity at the gateway: small, so that leaked tunnels lock it out. */
const MAX_TUNNELS = 3;
/** Departed requests per case: more than the cap, so that even one leak each would reach it. */
const DEPARTURES = MAX_TUNNELS + 2;
/** How long an event the test waits for may take (a leak never produces it). */
const BOUND_MS = 10_000;

/**
 * A local client that sends its request to the sidecar and leaves at once, while the gateway is still
 * deciding (issue 10, item 2: `printf 'CONNECT …' | socat -t0 - TCP:127.0.0.1:3128`). The sidecar must
 * notice and cancel the CONNECT at the gateway, and leave nothing behind: no tunnel, nothing at the
 * destination, no tunnel slot of the identity taken.
 *
 * "While the gateway is deciding" is made certain rather than hoped for: during the departures the test
 * holds an exclusive lock on the registry's permission table, so the gateway's policy query waits and no
 * answer can reach the sidecar before the client has gone. The destination never answers and never ends
 * its side, so a tunnel to it is only ever closed by the gateway.
 */
describe('sidecar: a client that leaves before its tunnel is established', () => {
  let registry: GrantedRegistry;
  let db: GrantedRegistry['db'];
  let gateway: GatewayProcess;
  let sidecar: SidecarProcess;
  let dest: CountingServer;
  let echo: { port: number; close(): Promise<void> };

  before(async () => {
    dest = await startCountingServer();
    echo = await startEchoServer();
    registry = await grantedRegistry([dest.port, echo.port]);
    const { pki, alpha } = registry;
    db = registry.db;
    gateway = await startGatewayProcess(
      await registry.config({
        // Every CONNECT queries the registry (no cached allow), and that query may wait for the test's
        // lock as long as the test holds it.
        extraPolicy: 'decision_cache_ms = 0\nquery_timeout_ms = 60000\npool_acquire_timeout_ms = 60000',
        extraEgress: `[rate_limit]\nmax_tunnels_per_identity = ${MAX_TUNNELS}`,
      }),
    );
    sidecar = await startSidecarProcess(
      sidecarArgs({ gateway: `127.0.0.1:${gateway.port}`, caPath: pki.caCertPath, agent: alpha }, [
        '--gateway-server-name',
        'localhost',
      ]),
    );
    // The sidecar's connection to the gateway is up, so every CONNECT below reaches the gateway.
    await assertFullCapacity();
  });

  after(async () => {
    const sidecarCode = await sidecar?.stop();
    const gatewayCode = await gateway?.stop();
    await dest?.close();
    await echo?.close();
    await registry?.cleanup();
    assert.equal(sidecarCode, 0, `sidecar exit code; stderr: ${sidecar?.stderr()}`);
    assert.equal(gatewayCode, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  const authority = () => `127.0.0.1:${dest.port}`;
  const requestHeads = {
    CONNECT: () => `CONNECT ${authority()} HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`,
    'absolute-form GET': () => `GET http://${authority()}/ HTTP/1.1\r\nHost: ${authority()}\r\n\r\n`,
  };

  /** Runs `body` while an admin transaction holds the permission table: policy queries wait for it. */
  async function withRegistryLocked(body: () => Promise<void>): Promise<void> {
    let release = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let locked = () => {};
    const isLocked = new Promise<void>((resolve) => {
      locked = resolve;
    });
    const transaction = db.sql.begin(async (tx) => {
      await tx`LOCK TABLE permission_registry IN ACCESS EXCLUSIVE MODE`;
      locked();
      await released;
    });
    await Promise.race([isLocked, transaction]);
    try {
      await body();
    } finally {
      release();
      await transaction;
    }
  }

  /** Writes `head` on a raw socket and leaves at once; resolves with the sidecar's line about it. */
  async function departedRequest(head: string, how: 'end' | 'destroy'): Promise<LogLine> {
    const mark = sidecar.logs.length;
    const socket = connect(sidecar.port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(head);
    if (how === 'end') socket.end();
    else socket.destroy();
    return within(
      sidecar.waitForLog((l) => sidecar.logs.indexOf(l) >= mark && typeof l['trace_id'] === 'string'),
      BOUND_MS,
      'the sidecar noticed that its client left while the gateway was deciding',
    );
  }

  /**
   * All of the identity's tunnel slots are free: MAX_TUNNELS tunnels open at once. The clients then
   * reset their connections (a FIN would only half-close the tunnels), and the gateway closes them.
   */
  async function assertFullCapacity(): Promise<void> {
    const mark = sidecar.logs.length;
    const tunnels = await Promise.all(
      Array.from({ length: MAX_TUNNELS }, () => proxyConnect({ port: sidecar.port }, authority())),
    );
    assert.deepEqual(
      tunnels.map((t) => t.status),
      Array(MAX_TUNNELS).fill(200),
      'every tunnel slot of the identity is free',
    );
    const opened = () => sidecar.logs.slice(mark).filter((l) => l.msg === 'tunnel opened');
    // The sidecar answers 200 first and logs after it.
    await within(
      sidecar.waitForLog(() => opened().length >= MAX_TUNNELS),
      BOUND_MS,
      'the sidecar logged the tunnels it opened',
    );
    const traces = opened().map((l) => l['trace_id']);
    for (const t of tunnels) t.socket.resetAndDestroy();
    for (const trace of traces) {
      await within(
        gateway.waitForLog((l) => l.msg === 'tunnel closed' && l['trace_id'] === trace),
        BOUND_MS,
        'the gateway closed a tunnel whose client reset',
      );
    }
    await dest.untilOpenAtMost(0, BOUND_MS);
  }

  for (const [kind, head] of Object.entries(requestHeads)) {
    for (const how of ['end', 'destroy'] as const) {
      test(`${kind}, then ${how}() before the answer: nothing survives the client`, async () => {
        const acceptedBefore = dest.accepted;
        for (let i = 0; i < DEPARTURES; i++) {
          let local: LogLine | undefined;
          await withRegistryLocked(async () => {
            local = await departedRequest(head(), how);
          });
          assert.equal(local?.msg, 'tunnel abandoned', 'the sidecar gave up a request whose client had left');
          // Only now can the gateway decide. The CONNECT reached it (the sidecar's connection is up, and it
          // reads a client's request before its end), and the gateway must drop it: no tunnel, slot freed.
          const atGateway = await within(
            gateway.waitForLog(
              (l) =>
                l['trace_id'] === local?.['trace_id'] &&
                (l.msg === 'CONNECT abandoned' ||
                  l.msg === 'CONNECT allowed' ||
                  l.msg === 'too many tunnels'),
            ),
            BOUND_MS,
            `the gateway's outcome for the departed CONNECT (trace ${String(local?.['trace_id'])})`,
          );
          // Dropped before a decision started (`received`: the stream's reset arrived in the turn that opened
          // it) or while deciding; never allowed.
          assert.equal(atGateway.msg, 'CONNECT abandoned');
          assert.match(String(atGateway['stage']), /^(received|deciding)$/);
        }
        await assertFullCapacity();
        assert.equal(
          dest.accepted - acceptedBefore,
          MAX_TUNNELS,
          'only the capacity check reached the destination, not one departed client',
        );
      });
    }
  }

  /** Resolves once a policy query of the gateway waits for the test's lock: its CONNECT is being decided. */
  async function untilPolicyQueryWaits(): Promise<void> {
    const deadline = Date.now() + BOUND_MS;
    for (;;) {
      const [row] = await db.sql<[{ n: number }]>`
        SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()`;
      if (row.n > 0) return;
      if (Date.now() > deadline) throw new Error(`no policy query waited for the lock within ${BOUND_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  test('bytes a client sends after its CONNECT, while the gateway decides, go through the tunnel first', async () => {
    const target = `127.0.0.1:${echo.port}`;
    const socket = connect(sidecar.port, '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.setEncoding('latin1').on('data', (text: string) => {
      received += text;
    });
    const ended = once(socket, 'end');
    await withRegistryLocked(async () => {
      socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
      // The sidecar has parsed the CONNECT and the gateway is deciding it: these bytes come on their own.
      await untilPolicyQueryWaits();
      socket.write('sent before the answer, ');
    });
    // Half-closing before the answer would count as leaving; after it, the tunnel keeps half-close.
    while (!received.includes('\r\n\r\n')) await within(once(socket, 'data'), BOUND_MS, 'the answer');
    socket.end('and after it');
    await within(ended, BOUND_MS, 'the tunnel echoed and ended');
    assert.match(received, /^HTTP\/1\.1 200 [^\r]*\r\n\r\nsent before the answer, and after it$/);
  });
});
