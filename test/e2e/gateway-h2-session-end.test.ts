import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { until, within } from '../helpers/bounded.js';
import { type GatewayProcess, startGatewayProcess } from '../helpers/gateway-process.js';
import { type GrantedRegistry, grantedRegistry } from '../helpers/granted-registry.js';
import {
  closedByGateway,
  connectHeaders,
  getHeaders,
  type RawH2Client,
  rawH2Connect,
} from '../helpers/h2-frames.js';
import { type CountingServer, flooding, startCountingServer } from '../helpers/loopback-servers.js';
import type { TestAgent, TestPki } from '../helpers/pki.js';

/** Download tunnels on the dying session; each back-pressured. */
const TUNNELS = 16;
/** Streams opened and reset at once in one rapid-reset run (the gateway's cap on a session's streams). */
const RESETS = 3000;
const BOUND_MS = 10_000;

/**
 * An HTTP/2 connection's end at the gateway (issue 10, item 2): every tunnel of a session closes with it
 * however the client leaves, and a session that nghttp2 gives up on (a rapid-reset burst) does not keep
 * its socket. The gateway's request timeout is long here (60 s), so that nothing below is the idle timer's
 * doing: a connection closed within the bound was closed by the session's end.
 */
describe('gateway: the end of an HTTP/2 session', () => {
  let registry: GrantedRegistry;
  let pki: TestPki;
  let gateway: GatewayProcess;
  let alpha: TestAgent;
  let noIdentity: TestAgent;
  let dest: CountingServer;
  const flood = flooding(1 << 30);

  before(async () => {
    dest = await startCountingServer(flood.serve);
    registry = await grantedRegistry([dest.port]);
    ({ pki, alpha } = registry);
    noIdentity = await pki.agentWithoutExtension();
    gateway = await startGatewayProcess(await registry.config({ extraServer: 'request_timeout_ms = 60000' }));
  });

  after(async () => {
    const code = await gateway?.stop();
    await dest?.close();
    await registry?.cleanup();
    assert.equal(code, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  const authority = () => `127.0.0.1:${dest.port}`;

  /**
   * TUNNELS download tunnels on one HTTP/2 connection whose client stops reading once they are open. The
   * client grants large windows (16 MiB a stream), so what holds the gateway is TCP itself: its writes to
   * the client back up, then each stream's, then each destination's.
   */
  async function backPressuredSession(): Promise<{ client: RawH2Client; tunnelIds: unknown[] }> {
    const client = await rawH2Connect(
      gateway.port,
      { caPath: pki.caCertPath, agent: alpha },
      { windowBytes: 16 << 20 },
    );
    const mark = gateway.logs.length;
    const heldBefore = flood.held;
    const ids = Array.from({ length: TUNNELS }, (_, i) => 2 * i + 1);
    for (const id of ids) client.headers(id, connectHeaders(authority()));
    await within(Promise.all(ids.map((id) => client.answer(id))), BOUND_MS, 'every CONNECT was answered');
    client.socket.pause();
    await until(
      () => flood.held - heldBefore >= TUNNELS,
      BOUND_MS,
      () => `${flood.held - heldBefore} of ${TUNNELS} destination connections held by backpressure`,
    );
    const allowed = () => gateway.logs.slice(mark).filter((l) => l.msg === 'CONNECT allowed');
    await within(
      gateway.waitForLog(() => allowed().length >= TUNNELS),
      BOUND_MS,
      'the gateway logged the tunnels it opened',
    );
    return { client, tunnelIds: allowed().map((l) => l['tunnel_id']) };
  }

  /** The gateway let go of every upstream connection of the session, and logged each tunnel's close. */
  async function assertAllClosed(tunnelIds: unknown[], openBefore: number): Promise<void> {
    await dest.untilOpenAtMost(openBefore, BOUND_MS);
    const closedLines = () =>
      gateway.logs.filter((l) => l.msg === 'tunnel closed' && tunnelIds.includes(l['tunnel_id']));
    await within(
      gateway.waitForLog(() => closedLines().length >= tunnelIds.length),
      BOUND_MS,
      `${closedLines().length} of ${tunnelIds.length} tunnels of the dead session logged as closed`,
    );
    for (const line of closedLines()) {
      // A reset reaches the streams as an error (ECONNRESET), a FIN as a connection that went away.
      assert.ok(['aborted', 'client_error'].includes(String(line['close_cause'])), JSON.stringify(line));
    }
  }

  const departures = {
    /** Its side ended (TCP FIN), the process still there and reading nothing: the stuck case. */
    'half-closes and reads nothing more': (c: RawH2Client) => c.socket.end(),
    /** The socket closed with data unread (a process that exits): the gateway gets a reset. */
    closes: (c: RawH2Client) => c.destroy(),
  };
  for (const [how, depart] of Object.entries(departures)) {
    test(`a client that ${how}, with ${TUNNELS} back-pressured downloads: every tunnel closes`, async () => {
      const openBefore = dest.open;
      const { client, tunnelIds } = await backPressuredSession();
      depart(client);
      try {
        await assertAllClosed(tunnelIds, openBefore);
      } finally {
        client.destroy();
      }
    });
  }

  async function rapidReset(client: RawH2Client, headers: Array<[string, string]>): Promise<void> {
    for (let id = 1; id < 2 * RESETS; ) {
      const burst: Buffer[] = [];
      for (let i = 0; i < 100 && id < 2 * RESETS; i++, id += 2) {
        burst.push(client.frames.headers(id, headers), client.frames.rst(id));
      }
      client.burst(burst);
      if (client.socket.destroyed) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  test('rapid reset with an identity: the gateway closes the connection and does not keep its socket', async () => {
    const client = await rawH2Connect(gateway.port, { caPath: pki.caCertPath, agent: alpha });
    await rapidReset(client, connectHeaders(authority()));
    await closedByGateway(client, BOUND_MS, 'the gateway closed the rapid-reset connection');
  });

  test('rapid reset without an identity: the same', async () => {
    const client = await rawH2Connect(gateway.port, { caPath: pki.caCertPath, agent: noIdentity });
    await rapidReset(client, getHeaders(authority()));
    await closedByGateway(client, BOUND_MS, 'the gateway closed the rapid-reset connection');
  });
});
