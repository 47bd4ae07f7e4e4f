import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createSecureContext } from 'node:tls';
import { parseDestination } from '../../src/destination/normalize.js';
import { createLogger } from '../../src/observability/logger.js';
import { GatewayConnection, type GatewayConnectionOptions } from '../../src/sidecar/gateway-connection.js';
import { within } from '../helpers/bounded.js';
import { createTestPki, type TestAgent, type TestPki } from '../helpers/pki.js';

type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, session: Http2Session) => void;

/** An in-process stand-in for the gateway's HTTP/2 side, whose answer to each stream a test decides. */
async function fakeGateway(pki: TestPki) {
  let handler: StreamHandler = (stream) => stream.respond({ ':status': 200 });
  const sessions: ServerHttp2Session[] = [];
  const server: Http2SecureServer = createSecureServer({
    cert: await readFile(pki.serverCertPath),
    key: await readFile(pki.serverKeyPath),
    requestCert: true,
    rejectUnauthorized: false,
  });
  server.on('session', (s) => sessions.push(s));
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    handler(stream, headers, stream.session!);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    sessions,
    onStream(h: StreamHandler) {
      handler = h;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A TCP relay that can be frozen: bytes stop flowing both ways, as on a dead network path. */
async function freezableRelay(targetPort: number) {
  const pairs: Array<[Socket, Socket]> = [];
  const server: Server = createServer((inbound) => {
    const outbound = connect(targetPort, '127.0.0.1');
    inbound.on('error', () => {});
    outbound.on('error', () => {});
    inbound.pipe(outbound).pipe(inbound);
    pairs.push([inbound, outbound]);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    freeze() {
      for (const [a, b] of pairs) {
        a.unpipe(b);
        b.unpipe(a);
        a.pause();
        b.pause();
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const [a, b] of pairs) {
          a.destroy();
          b.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

function capturingLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ test: (l: Record<string, unknown>) => boolean; found: () => void }> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString().split('\n').filter(Boolean)) {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        for (const w of waiters.filter((x) => x.test(line))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.found();
        }
      }
      done();
    },
  });
  return {
    logger: createLogger('info', sink),
    lines,
    /** Resolves once a line with this `msg` has been logged. */
    until(msg: string): Promise<void> {
      if (lines.some((l) => l['msg'] === msg)) return Promise.resolve();
      return new Promise((found) => waiters.push({ test: (l) => l['msg'] === msg, found }));
    },
  };
}

describe('sidecar gateway connection', () => {
  let pki: TestPki;
  let agent: TestAgent;
  let gateway: Awaited<ReturnType<typeof fakeGateway>>;
  const connections: GatewayConnection[] = [];

  before(async () => {
    pki = await createTestPki();
    agent = await pki.agent('agent-alpha');
    gateway = await fakeGateway(pki);
  });

  after(async () => {
    for (const c of connections) c.destroy();
    await gateway.close();
    await pki.cleanup();
  });

  /** `ca` replaces the trusted CA of the connection's TLS context (built as the sidecar builds it). */
  async function connection(
    port: number,
    { ca, ...overrides }: Partial<GatewayConnectionOptions> & { ca?: string } = {},
  ) {
    const log = capturingLogger();
    const c = new GatewayConnection({
      gateway: parseDestination(`127.0.0.1:${port}`),
      serverName: 'localhost',
      secureContext: createSecureContext({
        ca: ca ?? (await readFile(pki.caCertPath, 'utf8')),
        cert: agent.certPem,
        key: agent.keyPem,
      }),
      connectTimeoutMs: 5000,
      requestTimeoutMs: 10_000,
      keepaliveIntervalMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      reconnectMaxMs: 1000,
      logger: log.logger,
      ...overrides,
    });
    connections.push(c);
    return { c, log };
  }

  test('concurrent CONNECTs share one lazily opened connection; statuses come back as sent', async () => {
    const before = gateway.sessions.length;
    gateway.onStream((stream, headers) => {
      const status = headers[':authority'] === 'denied.example:443' ? 403 : 200;
      stream.respond({ ':status': status });
      if (status !== 200) stream.end('forbidden\n');
    });
    const { c } = await connection(gateway.port);
    assert.equal(gateway.sessions.length, before, 'nothing is opened before the first CONNECT');
    const results = await Promise.all([
      ...Array.from({ length: 10 }, () => c.request('ok.example:443', {})),
      c.request('denied.example:443', {}),
    ]);
    assert.deepEqual(
      results.map((r) => (r.kind === 'answered' ? r.status : r.kind)),
      [...Array(10).fill(200), 403],
    );
    assert.equal(gateway.sessions.length, before + 1, 'one TLS connection for all');
    for (const r of results) if (r.kind === 'answered') r.stream.close();
  });

  test('the CONNECT carries the traceparent it is given', async () => {
    let seen: string | undefined;
    gateway.onStream((stream, headers) => {
      seen = String(headers['traceparent']);
      stream.respond({ ':status': 200 });
    });
    const { c } = await connection(gateway.port);
    const header = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const r = await c.request('ok.example:443', { traceparent: header });
    assert.equal(r.kind, 'answered');
    assert.equal(seen, header);
  });

  test('a connection that dies before the stream starts is retried once on a fresh one', async () => {
    let streams = 0;
    gateway.onStream((stream, _headers, session) => {
      streams++;
      if (streams === 1)
        session.destroy(); // the first connection dies with the CONNECT in flight
      else stream.respond({ ':status': 200 });
    });
    const before = gateway.sessions.length;
    const { c, log } = await connection(gateway.port);
    const r = await c.request('ok.example:443', {});
    assert.equal(r.kind === 'answered' && r.status, 200);
    assert.equal(gateway.sessions.length, before + 2);
    assert.ok(log.lines.some((l) => l['msg'] === 'CONNECT retried on a fresh gateway connection'));
  });

  test('only once: a second death gives 502 with a reason', async () => {
    gateway.onStream((_stream, _headers, session) => session.destroy());
    const { c } = await connection(gateway.port);
    const r = await c.request('ok.example:443', {});
    assert.equal(r.kind, 'failed');
    assert.equal(r.kind === 'failed' && r.status, 502);
    assert.match(r.kind === 'failed' ? r.reason : '', /closed before it answered, twice/);
  });

  test('a stream the gateway resets (not refused) is not retried', async () => {
    gateway.onStream((stream) => stream.close(2 /* INTERNAL_ERROR */));
    const { c, log } = await connection(gateway.port);
    const r = await c.request('ok.example:443', {});
    assert.equal(r.kind === 'failed' && r.status, 502);
    assert.match(r.kind === 'failed' ? r.reason : '', /reset the CONNECT stream \(HTTP\/2 error code 2\)/);
    assert.ok(!log.lines.some((l) => l['msg'] === 'CONNECT retried on a fresh gateway connection'));
  });

  test('no answer within request_timeout_s: 504', async () => {
    gateway.onStream(() => {});
    const { c } = await connection(gateway.port, { requestTimeoutMs: 50 });
    const r = await c.request('slow.example:443', {});
    assert.equal(r.kind === 'failed' && r.status, 504);
  });

  test('an unreachable gateway: 502 with the reason, and backoff grows between attempts', async () => {
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const { c, log } = await connection(port, { reconnectMaxMs: 200 });
    for (let i = 0; i < 3; i++) {
      const r = await c.request('ok.example:443', {});
      assert.equal(r.kind === 'failed' && r.status, 502);
      assert.match(
        r.kind === 'failed' ? r.reason : '',
        /cannot reach the agent-gateway at 127\.0\.0\.1:\d+: connection refused/,
      );
    }
    const failures = log.lines.filter((l) => l['msg'] === 'gateway connect failed');
    assert.deepEqual(
      failures.map((l) => l['consecutive_failures']),
      [1, 2, 3],
    );
  });

  test('a gateway certificate from another CA is refused with a clear reason', async () => {
    const otherPki = await createTestPki();
    try {
      const { c } = await connection(gateway.port, { ca: await readFile(otherPki.caCertPath, 'utf8') });
      const r = await c.request('ok.example:443', {});
      assert.match(r.kind === 'failed' ? r.reason : '', /not signed by the CA in sidecar\.gateway_ca_path/);
    } finally {
      await otherPki.cleanup();
    }
  });

  test('keepalive: a connection whose PINGs go unanswered is dropped, and the next CONNECT reconnects', async () => {
    gateway.onStream((stream) => stream.respond({ ':status': 200 }));
    const relay = await freezableRelay(gateway.port);
    try {
      const { c, log } = await connection(relay.port, { keepaliveIntervalMs: 20, keepaliveTimeoutMs: 50 });
      const first = await c.request('ok.example:443', {});
      assert.equal(first.kind, 'answered');
      relay.freeze();
      await log.until('gateway keepalive timeout');
      await log.until('gateway disconnected');
      const second = await c.request('ok.example:443', {});
      assert.equal(second.kind === 'answered' && second.status, 200);
      assert.equal(log.lines.filter((l) => l['msg'] === 'gateway connected').length, 2);
    } finally {
      await relay.close();
    }
  });
  test('a caller that leaves before the answer cancels the CONNECT at the gateway (RST_STREAM CANCEL)', async () => {
    // The gateway holds the stream unanswered, as while it decides.
    const held = new Promise<ServerHttp2Stream>((resolve) => gateway.onStream((stream) => resolve(stream)));
    const { c } = await connection(gateway.port);
    const departure = new AbortController();
    const result = c.request('slow.example:443', {}, departure.signal);
    const stream = await held;
    departure.abort();
    assert.deepEqual(await within(result, 5000, 'the request settled'), { kind: 'cancelled' });
    if (!stream.closed) await once(stream, 'close');
    assert.equal(stream.rstCode, constants.NGHTTP2_CANCEL);
  });

  test('a caller already gone sends no CONNECT at all', async () => {
    let streams = 0;
    gateway.onStream((stream) => {
      streams++;
      stream.respond({ ':status': 200 });
    });
    const { c } = await connection(gateway.port);
    const warm = await c.request('ok.example:443', {});
    assert.equal(warm.kind, 'answered');
    const departure = new AbortController();
    departure.abort();
    assert.deepEqual(await c.request('ok.example:443', {}, departure.signal), { kind: 'cancelled' });
    const after = await c.request('ok.example:443', {});
    assert.equal(after.kind, 'answered');
    assert.equal(streams, 2, 'only the two CONNECTs of callers still there reached the gateway');
    for (const r of [warm, after]) if (r.kind === 'answered') r.stream.close();
  });

  test('new credentials: a new connection presents them at once; the old one closes after its last stream', async () => {
    const ca = await readFile(pki.caCertPath, 'utf8');
    const rotated = await pki.agent('agent-alpha');
    // What each session presented, and when the gateway side saw a GOAWAY from the sidecar.
    const presented = new Map<ServerHttp2Session, string>();
    const goaways: ServerHttp2Session[] = [];
    let goawaySeen: (s: ServerHttp2Session) => void = () => {};
    const firstGoaway = new Promise<ServerHttp2Session>((resolve) => {
      goawaySeen = resolve;
    });
    gateway.onStream((stream, _headers, session) => {
      const s = session as ServerHttp2Session;
      if (!presented.has(s)) {
        const raw = (s.socket as unknown as { getPeerCertificate(): { raw: Buffer } }).getPeerCertificate()
          .raw;
        presented.set(s, raw.toString('base64'));
        s.on('goaway', () => {
          goaways.push(s);
          goawaySeen(s);
        });
      }
      stream.respond({ ':status': 200 });
      stream.on('data', (chunk: Buffer) => stream.write(chunk));
    });
    const { c, log } = await connection(gateway.port);
    const first = createSecureContext({ ca, cert: agent.certPem, key: agent.keyPem });
    const idle = await c.replaceCredentials(first);
    assert.deepEqual(idle, { connection: 'next' }, 'nothing open: the next connection presents them');

    const old = await c.request('ok.example:443', {});
    assert.equal(old.kind, 'answered');
    const oldStream = old.kind === 'answered' ? old.stream : undefined;
    const switched = await c.replaceCredentials(
      createSecureContext({ ca, cert: rotated.certPem, key: rotated.keyPem }),
    );
    assert.deepEqual(switched, { connection: 'replaced' });
    let released = false;
    const firstUnused = c.whenUnused(first).then(() => {
      released = true;
    });
    const fresh = await c.request('ok.example:443', {});
    assert.equal(fresh.kind, 'answered');
    const sessions = [...presented.entries()];
    assert.equal(sessions.length, 2, 'two connections');
    assert.equal(sessions[0]?.[1], agent.certDer.toString('base64'));
    assert.equal(
      sessions[1]?.[1],
      rotated.certDer.toString('base64'),
      'the new one presents the new certificate',
    );

    // The old stream still flows, and its connection got no GOAWAY while it was open.
    const echoed = new Promise<string>((resolve) =>
      oldStream?.once('data', (d: Buffer) => resolve(d.toString())),
    );
    oldStream?.write('still here');
    assert.equal(await echoed, 'still here');
    assert.deepEqual(goaways, []);
    assert.equal(released, false, 'the old credentials are in use while their connection is');
    oldStream?.close();
    await log.until('gateway disconnected');
    await firstUnused;
    assert.equal(await firstGoaway, sessions[0]?.[0], 'GOAWAY on the old connection once its stream ended');
    const gone = log.lines.find((l) => l['msg'] === 'gateway disconnected');
    assert.equal(gone?.['reason'], 'replaced: new credentials');
    if (fresh.kind === 'answered') fresh.stream.close();
  });
});
