import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  type ClientTls,
  echoOrClose,
  h2Connect,
  h2Session,
  http1Request,
  readAll,
} from '../helpers/clients.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import {
  type OtlpProtocol,
  type OtlpReceiver,
  type ReceivedSpan,
  startOtlpReceiver,
  startSilentCollector,
} from '../helpers/otlp-receiver.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { proxyConnect, sidecarArgs, startSidecarProcess } from '../helpers/sidecar-process.js';
import { grantLoopbackPorts } from '../helpers/sidecar-registry.js';

/**
 * Issue 14, traces: the real gateway (and sidecar) export OTLP to a receiver of the test's own, which
 * decodes what arrives. Span names, attributes, parentage, the caller's traceparent and tracestate
 * continued, all three transports, and a collector that never answers not slowing any CONNECT.
 */
const ADMIN_TOKEN = 't'.repeat(32);
// Exports every 50 ms instead of 5 s: the standard variable, which the gateway honours.
const FAST_EXPORT = { OTEL_BSP_SCHEDULE_DELAY: '50' };
const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';

let pki: TestPki;
let db: FreshDatabase;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let tls: ClientTls;
let destination: string;
const ungranted = '127.0.0.1:9';

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  echo = await startEchoServer();
  destination = `127.0.0.1:${echo.port}`;
  const agent = await pki.agent('agent-trace');
  tls = { caPath: pki.caCertPath, agent };
  await grantLoopbackPorts(db.sql, { identity: 'agent-trace', agentSpki: agent.spkiDer, ports: [echo.port] });
});

after(async () => {
  await echo?.close();
  await db?.drop();
  await pki?.cleanup();
});

async function gatewayExportingTo(observability: string, env: NodeJS.ProcessEnv = {}, admin = false) {
  return startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraObservability: observability,
      extraTables: admin ? '[admin]\nlisten_addr = "127.0.0.1:0"' : '',
    }),
    { ...FAST_EXPORT, AGENT_GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, ...env },
  );
}

/** An HTTP/1.1 CONNECT with the caller's trace headers; echoes a byte through an allowed tunnel. */
async function connectWithTrace(gateway: GatewayProcess, authority: string, callerSpan: string) {
  const res = await http1Request(
    gateway.port,
    tls,
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n` +
      `traceparent: 00-${CALLER_TRACE}-${callerSpan}-01\r\ntracestate: vendor=opaque,other=1\r\n\r\n`,
  );
  return echoOrClose(res, 'ping');
}

const byName = (spans: readonly ReceivedSpan[], name: string) => spans.filter((s) => s.name === name);
const childrenOf = (spans: readonly ReceivedSpan[], parent: ReceivedSpan) =>
  spans.filter((s) => s.parentSpanId === parent.spanId && s.traceId === parent.traceId);

for (const protocol of ['grpc', 'http/protobuf', 'http/json'] as OtlpProtocol[]) {
  describe(`gateway spans over ${protocol}`, { timeout: 60_000 }, () => {
    let receiver: OtlpReceiver;
    let gateway: GatewayProcess;
    before(async () => {
      receiver = await startOtlpReceiver(protocol);
      gateway = await gatewayExportingTo(
        `otlp_endpoint = "${receiver.endpoint}"\notlp_protocol = "${protocol}"`,
      );
      await gateway.waitForLog((l) => l.msg === 'trace export enabled', 'trace export enabled');
    });
    after(async () => {
      await gateway?.stop();
      await receiver?.close();
    });

    test('an allowed CONNECT: one gateway CONNECT span continuing the caller, phases and tunnel as children', async () => {
      assert.equal(await connectWithTrace(gateway, destination, CALLER_SPAN), 200);
      await receiver.waitFor((s) => byName(s, 'gateway tunnel').length === 1, 'gateway tunnel span');
      const spans = receiver.spans;
      const [connect, ...more] = byName(spans, 'gateway CONNECT');
      assert.ok(connect, 'a gateway CONNECT span');
      assert.equal(more.length, 0);
      assert.equal(connect.service, 'agent_gateway');
      assert.equal(connect.traceId, CALLER_TRACE, 'the caller trace is continued');
      assert.equal(connect.parentSpanId, CALLER_SPAN, "the caller's span is the parent");
      assert.equal(connect.traceState, 'vendor=opaque,other=1');
      assert.equal(connect.kind, 2, 'a server span');
      assert.equal(connect.attributes['dest_authority'], destination);
      assert.equal(connect.attributes['source_identity'], 'agent-trace');
      assert.match(String(connect.attributes['source_peer_addr']), /^127\.0\.0\.1:\d+$/);
      assert.equal(connect.attributes['policy_decision'], 'allow');
      assert.deepEqual(
        connect.events.map((e) => e.name),
        ['CONNECT allowed'],
      );
      const children = childrenOf(spans, connect);
      assert.deepEqual(children.map((c) => c.name).sort(), [
        'gateway dial',
        'gateway dns',
        'gateway policy',
        'gateway tunnel',
      ]);
      for (const phase of children.filter((c) => c.name !== 'gateway tunnel')) {
        assert.ok(
          phase.startNs >= connect.startNs && phase.endNs <= connect.endNs,
          `${phase.name} inside: ${phase.startNs}-${phase.endNs} in ${connect.startNs}-${connect.endNs}`,
        );
      }
      const tunnel = byName(spans, 'gateway tunnel')[0]!;
      assert.equal(tunnel.attributes['bytes_client_to_dest'], 4);
      assert.equal(tunnel.attributes['bytes_dest_to_client'], 4);
      assert.equal(tunnel.attributes['close_cause'], 'completed');
      // The `tunnel closed` line's fields, for collectors that turn span events back into log records.
      assert.deepEqual(
        tunnel.events.map((e) => e.name),
        ['tunnel closed'],
      );
      assert.equal(tunnel.attributes['tunnel_id'], connect.attributes['tunnel_id']);
      assert.equal(tunnel.attributes['source_identity'], 'agent-trace');
      assert.equal(tunnel.attributes['dest_authority'], destination);
      assert.match(String(connect.attributes['signing_key_id']), /^org-of-agent-trace$/);
      assert.ok(tunnel.startNs >= connect.endNs, 'the CONNECT span ends at the decision, before the tunnel');
      const expected =
        protocol === 'grpc' ? /^application\/grpc/ : protocol === 'http/json' ? /json/ : /protobuf/;
      for (const type of receiver.requests) assert.match(type, expected);
    });

    test('a denied CONNECT: a span with the CONNECT denied event and its deny reason, no DNS or dial', async () => {
      const before = receiver.spans.length;
      assert.equal(await connectWithTrace(gateway, ungranted, 'aaaaaaaaaaaaaaaa'), 403);
      await receiver.waitFor(
        (s) => s.slice(before).some((x) => x.name === 'gateway CONNECT'),
        'the denied CONNECT span',
      );
      const spans = receiver.spans.slice(before);
      const connect = byName(spans, 'gateway CONNECT')[0]!;
      assert.equal(connect.parentSpanId, 'aaaaaaaaaaaaaaaa');
      assert.equal(connect.attributes['dest_authority'], ungranted);
      assert.equal(connect.attributes['deny_reason'], 'no_matching_permission');
      const denied = connect.events.find((e) => e.name === 'CONNECT denied');
      assert.ok(denied, 'CONNECT denied event');
      assert.equal(denied.attributes['deny_reason'], 'no_matching_permission');
      await receiver.waitFor((s) => childrenOf(s, connect).length >= 1, 'the policy span');
      assert.deepEqual(
        childrenOf(receiver.spans, connect).map((c) => c.name),
        ['gateway policy'],
      );
    });
  });
}

describe('over HTTP/2, without a caller trace', { timeout: 60_000 }, () => {
  test('the gateway starts a trace of its own', async () => {
    const receiver = await startOtlpReceiver('http/protobuf');
    const gateway = await gatewayExportingTo(
      `otlp_endpoint = "${receiver.endpoint}"\notlp_protocol = "http/protobuf"`,
    );
    try {
      const session = await h2Session(gateway.port, tls);
      const { status, stream } = await h2Connect(session, destination);
      assert.equal(status, 200);
      stream.end();
      stream.resume();
      await new Promise((resolve) => stream.once('close', resolve));
      session.close();
      await receiver.waitFor((s) => byName(s, 'gateway tunnel').length === 1, 'the tunnel span');
      const connect = byName(receiver.spans, 'gateway CONNECT')[0]!;
      assert.equal(connect.parentSpanId, '', 'a root span');
      assert.match(connect.traceId, /^[0-9a-f]{32}$/);
      assert.equal(connect.attributes['protocol'], 'HTTP/2');
    } finally {
      await gateway.stop();
      await receiver.close();
    }
  });
});

describe('sidecar and gateway in one trace', { timeout: 60_000 }, () => {
  test("agent → sidecar CONNECT → gateway CONNECT, each the parent of the next; the sidecar's /metrics", async () => {
    const receiver = await startOtlpReceiver('grpc');
    const gateway = await gatewayExportingTo(`otlp_endpoint = "${receiver.endpoint}"`);
    const sidecarToken = 's'.repeat(32);
    const sidecar = await startSidecarProcess(
      sidecarArgs({ gateway: `127.0.0.1:${gateway.port}`, caPath: pki.caCertPath, agent: tls.agent! }, [
        '--gateway-server-name',
        'localhost',
        '--otlp-endpoint',
        receiver.endpoint,
        '--admin-listen',
        '127.0.0.1:0',
      ]),
      { ...FAST_EXPORT, AGENT_GATEWAY_SIDECAR_ADMIN_TOKEN: sidecarToken },
    );
    try {
      const agentSpan = 'bbbbbbbbbbbbbbbb';
      const tunnel = await proxyConnect({ port: sidecar.port }, destination, {
        traceparent: `00-${CALLER_TRACE}-${agentSpan}-01`,
      });
      assert.equal(tunnel.status, 200);
      const reply = readAll(tunnel.socket, tunnel.head);
      tunnel.socket.end('hi');
      assert.equal((await reply).toString(), 'hi');
      await receiver.waitFor(
        (s) => byName(s, 'gateway tunnel').length === 1 && byName(s, 'sidecar tunnel').length === 1,
        'both tunnel spans',
      );
      const spans = receiver.spans;
      const sidecarConnect = byName(spans, 'sidecar CONNECT')[0]!;
      const gatewayConnect = byName(spans, 'gateway CONNECT')[0]!;
      assert.equal(sidecarConnect.service, 'agent_gateway_sidecar');
      assert.equal(sidecarConnect.kind, 3, 'a client span');
      assert.equal(sidecarConnect.traceId, CALLER_TRACE);
      assert.equal(sidecarConnect.parentSpanId, agentSpan, "the agent's span is the sidecar's parent");
      assert.equal(gatewayConnect.service, 'agent_gateway');
      assert.equal(gatewayConnect.traceId, CALLER_TRACE);
      assert.equal(
        gatewayConnect.parentSpanId,
        sidecarConnect.spanId,
        'the sidecar span is the gateway parent',
      );
      const sidecarTunnel = byName(spans, 'sidecar tunnel')[0]!;
      assert.equal(sidecarTunnel.parentSpanId, sidecarConnect.spanId);
      assert.equal(sidecarTunnel.attributes['bytes_client_to_dest'], 2);
      const line = await sidecar.waitForLog((l) => l.msg === 'admin listening', 'sidecar admin listening');
      const url = `http://${String(line['admin_addr'])}/metrics`;
      assert.equal((await fetch(url)).status, 401, 'the token is required');
      const text = await (await fetch(url, { headers: { authorization: `Bearer ${sidecarToken}` } })).text();
      assert.match(
        text,
        /agent_gateway_sidecar_tunnels_total\{kind="connect",status="200",answered_by="gateway"\} 1/,
      );
      assert.match(text, /agent_gateway_sidecar_tunnel_bytes_total\{direction="client_to_dest"\} 2/);
    } finally {
      await sidecar.stop();
      await gateway.stop();
      await receiver.close();
    }
  });
});

describe('a collector that never answers', { timeout: 60_000 }, () => {
  test('CONNECTs are not slowed: all are answered, and spans beyond the bounded queue are counted as dropped', async () => {
    const silent = await startSilentCollector();
    const gateway = await gatewayExportingTo(
      `otlp_endpoint = "${silent.endpoint}"\notlp_protocol = "http/protobuf"`,
      { OTEL_BSP_MAX_QUEUE_SIZE: '4', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '2' },
      true,
    );
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) statuses.push(await connectWithTrace(gateway, destination, CALLER_SPAN));
      assert.deepEqual(statuses, Array(10).fill(200));
      assert.ok(silent.received() >= 1, 'an export was attempted (and is still hanging)');
      const line = await gateway.waitForLog((l) => l.msg === 'admin listening', 'admin listening');
      const metrics = await (
        await fetch(`http://${String(line['admin_addr'])}/metrics`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        })
      ).text();
      const dropped = Number(/agent_gateway_trace_spans_total\{outcome="dropped"\} (\d+)/.exec(metrics)?.[1]);
      // 10 tunnels make 50 spans; at most 4 queued and 2 in the hanging export.
      assert.ok(dropped >= 40, `dropped ${dropped}`);
      assert.match(metrics, /agent_gateway_trace_spans_total\{outcome="exported"\} 0/);
    } finally {
      await gateway.stop();
      await silent.close();
    }
  });
});
