import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { until, within } from '../helpers/bounded.js';
import { h2Connect, h2Session } from '../helpers/clients.js';
import { type GatewayProcess, type LogLine, startGatewayProcess } from '../helpers/gateway-process.js';
import { type GrantedRegistry, grantedRegistry } from '../helpers/granted-registry.js';
import {
  closedByGateway,
  connectHeaders,
  getHeaders,
  type RawH2Client,
  rawH2Connect,
} from '../helpers/h2-frames.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import type { TestAgent, TestPki } from '../helpers/pki.js';
import { processSockets } from '../helpers/proc-sockets.js';

const BOUND_MS = 10_000;

/**
 * Connections that can never carry a tunnel are not kept (issue 10, item 3). No CA is trusted, so any
 * self-signed certificate completes the handshake; what such a client may do afterwards is bounded: a
 * certificate without a valid identity is closed after its first refusal, PINGs and refused streams are
 * not activity, and the listener caps connections in total and per source address.
 *
 * The clients here are the attacker's: they never end their side of the connection and ignore GOAWAY, so
 * a connection that closes was closed by the gateway.
 */
describe('gateway: connections that can never carry a tunnel', () => {
  let registry: GrantedRegistry;
  let pki: TestPki;
  let echo: { port: number; close(): Promise<void> };
  let alpha: TestAgent;
  let noExtension: TestAgent;
  let malformed: TestAgent;
  /** request_timeout_ms = 60000: whatever closes a connection within the bound, it is not the idle timer. */
  let patient: GatewayProcess;
  /** request_timeout_ms = 300. */
  let strict: GatewayProcess;

  before(async () => {
    echo = await startEchoServer();
    registry = await grantedRegistry([echo.port]);
    ({ pki, alpha } = registry);
    noExtension = await pki.agentWithoutExtension();
    // An IA5String (tag 0x16) where a UTF8String must be.
    malformed = await pki.agentWithExtensionDer(Buffer.from([0x16, 0x05, ...Buffer.from('alpha')]));
    patient = await startGatewayProcess(await registry.config({ extraServer: 'request_timeout_ms = 60000' }));
    strict = await startGatewayProcess(await registry.config({ extraServer: 'request_timeout_ms = 300' }));
  });

  after(async () => {
    const codes = [];
    for (const g of [patient, strict]) codes.push(await g?.stop());
    await echo?.close();
    await registry?.cleanup();
    assert.deepEqual(codes, [0, 0]);
  });

  const authority = () => `127.0.0.1:${echo.port}`;
  const tlsOf = (agent: TestAgent) => ({ caPath: pki.caCertPath, agent });

  for (const [kind, agent] of [
    ['no identity extension', () => noExtension],
    ['a malformed identity', () => malformed],
  ] as const) {
    test(`HTTP/2 with ${kind}: after its first 403 the session is closed`, async () => {
      const client = await rawH2Connect(patient.port, tlsOf(agent()));
      client.headers(1, connectHeaders(authority()));
      await within(client.answer(1), BOUND_MS, 'the CONNECT was answered');
      await within(client.goaway, BOUND_MS, 'the gateway sent GOAWAY after the refusal');
      await closedByGateway(
        client,
        BOUND_MS,
        'the gateway closed the connection of a client that can have no tunnel',
      );
    });
  }

  test('HTTP/1.1 with no identity extension: after its 403 the connection is closed', async () => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: patient.port,
      ALPNProtocols: ['http/1.1'],
      ca: readFileSync(pki.caCertPath),
      cert: readFileSync(noExtension.certPath),
      key: readFileSync(noExtension.keyPath),
      servername: 'localhost',
      allowHalfOpen: true,
    } as ConnectionOptions);
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    let received = '';
    socket.setEncoding('latin1').on('data', (text: string) => {
      received += text;
    });
    socket.once('secureConnect', () => socket.write(`CONNECT ${authority()} HTTP/1.1\r\nHost: x\r\n\r\n`));
    // It keeps writing (and never ends its side): a socket the gateway still held would take it.
    const writer = setInterval(() => socket.writable && socket.write('x'), 50);
    try {
      await within(closed, BOUND_MS, 'the gateway closed the HTTP/1.1 connection after its refusal');
    } finally {
      clearInterval(writer);
    }
    assert.match(received, /^HTTP\/1\.1 403 /);
  });

  /** The gateway's `request timeout` line for this client's connection. */
  const timeoutLine = (client: RawH2Client) => (l: LogLine) =>
    l.msg === 'request timeout' && l['source_peer_addr'] === client.peerAddr;

  const refusals: Record<string, (c: RawH2Client) => Promise<void>> = {
    'a 405 (not CONNECT)': async (c) => {
      c.headers(1, getHeaders(authority()));
      await within(c.answer(1), BOUND_MS, 'the GET was answered');
    },
    'a 403 (a destination it has no permission for)': async (c) => {
      c.headers(1, connectHeaders('127.0.0.1:9'));
      await within(c.answer(1), BOUND_MS, 'the CONNECT was answered');
    },
    'no request at all': async () => {},
  };
  for (const [kind, refuse] of Object.entries(refusals)) {
    test(`a connection with a valid identity, ${kind} and then only PINGs, is closed after request_timeout_ms`, async () => {
      const client = await rawH2Connect(strict.port, tlsOf(alpha));
      await refuse(client);
      await closedByGateway(client, BOUND_MS, 'the gateway closed a connection that carried no tunnel');
      await within(strict.waitForLog(timeoutLine(client)), BOUND_MS, 'the request timeout line');
    });
  }

  test('an open tunnel keeps its connection past request_timeout_ms; once it closes, the connection idles out', async () => {
    const client = await rawH2Connect(strict.port, tlsOf(alpha));
    client.headers(1, connectHeaders(authority()));
    await within(client.answer(1), BOUND_MS, 'the tunnel was opened');
    // A second connection, opened after the tunnel and sending nothing, times out: by then the first one
    // has waited longer than request_timeout_ms, and its timer (armed first) would have fired first.
    const witness = await rawH2Connect(strict.port, tlsOf(alpha));
    await closedByGateway(witness, BOUND_MS, 'the idle witness connection timed out');
    assert.equal(strict.logs.find(timeoutLine(client)), undefined, 'the tunnel kept its connection');
    assert.equal(client.socket.destroyed, false);
    client.rst(1);
    await closedByGateway(client, BOUND_MS, 'the connection idled out after its tunnel closed');
    await within(strict.waitForLog(timeoutLine(client)), BOUND_MS, 'the request timeout line');
  });
});

/**
 * server.max_connections and server.max_connections_per_source (issue 10, item 3): beyond the caps a
 * connection is closed at accept, before any TLS work, with a `connection refused` line that says which
 * cap bit; a legitimate client gets in once the holders are gone. Loopback gives each test source an
 * address of its own (127.0.0.2, 127.0.0.3).
 */
describe('gateway: connection caps', () => {
  let registry: GrantedRegistry;
  let pki: TestPki;
  let echo: { port: number; close(): Promise<void> };
  let alpha: TestAgent;
  /** max_connections = 4, max_connections_per_source = 2. */
  let capped: GatewayProcess;

  before(async () => {
    echo = await startEchoServer();
    registry = await grantedRegistry([echo.port]);
    ({ pki, alpha } = registry);
    capped = await startGatewayProcess(
      await registry.config({
        extraServer: 'request_timeout_ms = 60000\nmax_connections = 4\nmax_connections_per_source = 2',
      }),
    );
  });

  after(async () => {
    const code = await capped?.stop();
    await echo?.close();
    await registry?.cleanup();
    assert.equal(code, 0, `gateway exit code; stderr: ${capped?.stderr()}`);
  });

  const authority = () => `127.0.0.1:${echo.port}`;
  const tlsOf = (agent: TestAgent) => ({ caPath: pki.caCertPath, agent });

  /** A TLS handshake from `localAddress`; 'refused' if the gateway closes the connection first. */
  function attempt(localAddress: string): Promise<'accepted' | 'refused'> {
    return new Promise((resolve) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: capped.port,
        // tls.connect passes it on to the socket; @types/node does not list it.
        ...({ localAddress } as ConnectionOptions),
        ALPNProtocols: ['h2'],
        ca: readFileSync(pki.caCertPath),
        cert: readFileSync(alpha.certPath),
        key: readFileSync(alpha.keyPath),
        servername: 'localhost',
      });
      socket.once('secureConnect', () => {
        socket.destroy();
        resolve('accepted');
      });
      socket.once('error', () => resolve('refused'));
      socket.once('close', () => resolve('refused'));
    });
  }

  test('server.max_connections and max_connections_per_source refuse at accept, logged; a client gets in once the others are gone', async () => {
    const mark = capped.logs.length;
    const held: RawH2Client[] = [];
    const hold = async (localAddress: string) =>
      held.push(await rawH2Connect(capped.port, tlsOf(alpha), { localAddress }));
    try {
      await hold('127.0.0.1');
      await hold('127.0.0.1');
      assert.equal(await attempt('127.0.0.1'), 'refused', 'a third connection from one source');
      await hold('127.0.0.2');
      await hold('127.0.0.2');
      assert.equal(await attempt('127.0.0.3'), 'refused', 'a fifth connection in total');
      const refusedLines = () => capped.logs.slice(mark).filter((l) => l.msg === 'connection refused');
      await within(
        capped.waitForLog(() => refusedLines().length >= 2),
        BOUND_MS,
        'both refusals were logged',
      );
      const refused = refusedLines();
      assert.deepEqual(
        refused.map((l) => [String(l['source_peer_addr']).split(':')[0], l['reason']]),
        [
          ['127.0.0.1', 'max_connections_per_source'],
          ['127.0.0.3', 'max_connections'],
        ],
      );
      assert.match(String(refused[0]?.['detail']), /2 connections open from this address/);
      assert.match(String(refused[1]?.['detail']), /4 connections open, server\.max_connections = 4/);
    } finally {
      for (const c of held) c.destroy();
    }
    // Every held connection is gone at the gateway (its own sockets, as the kernel lists them).
    const pid = capped.child.pid!;
    await until(
      () => processSockets(pid, { localPort: capped.port }) === 0,
      BOUND_MS,
      () => `${processSockets(pid, { localPort: capped.port })} client connections still held by the gateway`,
    );
    const session = await h2Session(capped.port, tlsOf(alpha));
    try {
      const { status, stream } = await h2Connect(session, authority());
      assert.equal(status, 200, 'a legitimate client gets its tunnel');
      stream.close();
    } finally {
      session.close();
    }
  });
});
