import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ExportResultCode } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOnSampler,
  InMemorySpanExporter,
  ParentBasedSampler,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { parseDestination } from '../../src/destination/normalize.js';
import type { ConnectAttempt } from '../../src/session/events.js';
import type { TunnelSession } from '../../src/session/tunnel-session.js';
import { connectSpanSubscriber } from '../../src/tracing/connect-spans.js';
import { exportQueue } from '../../src/tracing/pipeline.js';
import { SpanRecorder } from '../../src/tracing/recorded-spans.js';
import { DEFAULT_BATCH, resolveTracing, tracesUrl } from '../../src/tracing/settings.js';
import { hrTimeOf } from '../../src/tracing/span-time.js';

describe('tracing settings: the config file, then the standard OTEL_* variables', () => {
  const input = { endpoint: undefined, protocol: undefined, serviceName: 'agent_gateway' } as const;

  test('no endpoint anywhere: off; OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none turn it off', () => {
    assert.equal(resolveTracing(input, {}).settings, undefined);
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4317' };
    assert.ok(resolveTracing(input, on).settings);
    assert.equal(resolveTracing(input, { ...on, OTEL_SDK_DISABLED: 'true' }).settings, undefined);
    assert.equal(resolveTracing(input, { ...on, OTEL_TRACES_EXPORTER: 'none' }).settings, undefined);
  });

  test('grpc by default; the file wins over the environment; env protocols and URLs follow the spec', () => {
    const file = resolveTracing(
      { ...input, endpoint: 'http://file:4317' },
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:1' },
    );
    assert.equal(file.settings?.url, 'http://file:4317');
    assert.equal(file.settings?.protocol, 'grpc');
    const http = resolveTracing(input, {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:4318',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    });
    assert.equal(http.settings?.url, 'http://env:4318/v1/traces', 'a base URL gets the signal path');
    const signal = resolveTracing(input, {
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://env:4318/custom',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://other:1',
      OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    });
    assert.equal(signal.settings?.url, 'http://env:4318/custom', 'the signal URL is used as given');
    assert.equal(signal.settings?.protocol, 'http/json', 'the signal-specific protocol wins');
    assert.equal(tracesUrl('http://c:4318/already/here', 'http/json'), 'http://c:4318/already/here');
    assert.equal(tracesUrl('http://c:4317/ignored', 'grpc'), 'http://c:4317/ignored');
  });

  test('batch and sampler variables apply; bad values are warned about and replaced by defaults', () => {
    const r = resolveTracing(
      { ...input, endpoint: 'http://c:4317' },
      {
        OTEL_BSP_MAX_QUEUE_SIZE: '16',
        OTEL_BSP_SCHEDULE_DELAY: 'soon',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0.25',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'carrier-pigeon',
      },
    );
    assert.equal(r.settings?.batch.maxQueueSize, 16);
    assert.equal(r.settings?.batch.scheduledDelayMillis, DEFAULT_BATCH.scheduledDelayMillis);
    assert.equal(r.settings?.sampler, 'parentbased_traceidratio');
    assert.equal(r.settings?.samplerRatio, 0.25);
    assert.equal(r.warnings.length, 2, r.warnings.join('; '));
    const unusable = resolveTracing(input, { OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' });
    assert.equal(unusable.settings, undefined);
    assert.equal(unusable.warnings.length, 1);
  });
});

function attempt(overrides: Partial<ConnectAttempt> = {}): ConnectAttempt {
  return {
    protocol: 'HTTP/1.1',
    peerAddr: '127.0.0.1:5555',
    identity: 'agent-\u202eevil',
    claimedIdentity: null,
    spki: Buffer.alloc(0),
    spkiFingerprint: '',
    rawAuthority: 'API.example.com',
    trace: { traceId: 'a'.repeat(32), parentSpanId: 'b'.repeat(16), flags: 1, traceState: 'v=1' },
    startedAt: 1000,
    destination: parseDestination('API.example.com'),
    grant: undefined,
    policy: { start: 1001, end: 1003 },
    dns: undefined,
    dial: undefined,
    ...overrides,
  };
}

function tracer() {
  const exporter = new InMemorySpanExporter();
  const recorder = new SpanRecorder(
    new SimpleSpanProcessor({ exporter }),
    resourceFromAttributes({ 'service.name': 'test' }),
    { name: 'test' },
    new ParentBasedSampler({ root: new AlwaysOnSampler() }),
  );
  return { exporter, subscriber: connectSpanSubscriber(recorder) };
}

/** Spans are built after the turn that published the event. */
const afterTurn = () => new Promise((resolve) => setImmediate(resolve));

const ms = (span: ReadableSpan, which: 'startTime' | 'endTime') => {
  const [s, ns] = span[which];
  return s * 1000 + ns / 1e6;
};

describe('CONNECT spans from events', () => {
  test('a deny: the caller continued, the phases as children at their recorded times, escaped identity', async () => {
    const { exporter, subscriber } = tracer();
    subscriber.connectRejected?.({
      attempt: attempt(),
      status: 403,
      reason: { kind: 'denied', denyReason: 'scope_missing' },
      detail: undefined,
    });
    await afterTurn();
    const spans = exporter.getFinishedSpans();
    const connect = spans.find((s) => s.name === 'gateway CONNECT')!;
    const policy = spans.find((s) => s.name === 'gateway policy')!;
    assert.equal(spans.length, 2);
    assert.equal(connect.spanContext().traceId, 'a'.repeat(32));
    assert.equal(connect.parentSpanContext?.spanId, 'b'.repeat(16));
    assert.equal(connect.spanContext().traceState?.serialize(), 'v=1');
    assert.equal(connect.attributes['dest_authority'], 'api.example.com:443');
    assert.equal(connect.attributes['source_identity'], 'agent-\\u{202E}evil');
    assert.equal(connect.attributes['deny_reason'], 'scope_missing');
    assert.deepEqual(
      connect.events.map((e) => [e.name, e.attributes?.['deny_reason']]),
      [['CONNECT denied', 'scope_missing']],
    );
    assert.equal(policy.parentSpanContext?.spanId, connect.spanContext().spanId);
    const origin = ms(connect, 'startTime') - 1000;
    assert.ok(
      Math.abs(ms(policy, 'startTime') - origin - 1001) < 0.001,
      'policy starts at its recorded time',
    );
    assert.ok(Math.abs(ms(policy, 'endTime') - origin - 1003) < 0.001, 'and ends at it');
  });

  test('a caller that does not sample gets no span recorded; a phase cut short gets no child', async () => {
    const { exporter, subscriber } = tracer();
    subscriber.connectAbandoned?.({
      attempt: attempt({ trace: { traceId: 'c'.repeat(32), parentSpanId: 'd'.repeat(16), flags: 0 } }),
      stage: 'deciding',
    });
    await afterTurn();
    assert.equal(exporter.getFinishedSpans().length, 0);
    subscriber.connectAbandoned?.({
      attempt: attempt({ trace: undefined, policy: { start: 1001, end: 0 } }),
      stage: 'deciding',
    });
    assert.equal(exporter.getFinishedSpans().length, 0, 'spans are made after the turn of the event');
    await afterTurn();
    const names = exporter.getFinishedSpans().map((s) => s.name);
    assert.deepEqual(names, ['gateway CONNECT']);
    assert.equal(exporter.getFinishedSpans()[0]!.parentSpanContext, undefined, 'a new trace');
  });

  test('an allow ends the CONNECT span at the 200; the close makes a tunnel child with bytes and cause', async () => {
    const { exporter, subscriber } = tracer();
    const a = attempt({ dns: { start: 1003, end: 1004 }, dial: { start: 1004, end: 1006 } });
    const session = {
      id: 't-1',
      identity: 'agent-x',
      destination: parseDestination('api.example.com'),
      protocol: 'HTTP/1.1',
      destAddr: '192.0.2.1',
      grant: { permissionId: 'p', signingKeyId: 'k', scopeId: '1', cached: false },
      openedAtMono: 1007,
    } as unknown as TunnelSession;
    subscriber.tunnelOpened?.({ session, attempt: a });
    await afterTurn();
    const connect = exporter.getFinishedSpans().find((s) => s.name === 'gateway CONNECT')!;
    assert.equal(exporter.getFinishedSpans().length, 4, 'CONNECT, policy, dns, dial');
    assert.equal(ms(connect, 'endTime') - ms(connect, 'startTime'), 7);
    subscriber.tunnelClosed?.({
      session,
      cause: 'idle_timeout',
      reason: undefined,
      error: undefined,
      bytesClientToDest: 10,
      bytesDestToClient: 20,
      durationMs: 5,
      throttle: undefined,
    });
    await afterTurn();
    const tunnel = exporter.getFinishedSpans().find((s) => s.name === 'gateway tunnel')!;
    assert.equal(tunnel.parentSpanContext?.spanId, connect.spanContext().spanId);
    assert.equal(tunnel.attributes['bytes_dest_to_client'], 20);
    assert.equal(tunnel.attributes['close_cause'], 'idle_timeout');
    assert.deepEqual(hrTimeOf(1007), tunnel.startTime);
    assert.equal(tunnel.attributes['tunnel_id'], 't-1');
    assert.deepEqual(
      tunnel.events.map((e) => e.name),
      ['tunnel closed'],
    );
  });

  test('a span that cannot be built is reported once and never escapes into the gateway', async () => {
    const exporter = new InMemorySpanExporter();
    const errors: unknown[] = [];
    const recorder = new SpanRecorder(
      new SimpleSpanProcessor({ exporter }),
      resourceFromAttributes({}),
      { name: 'test' },
      new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    );
    const subscriber = connectSpanSubscriber(recorder, (e) => errors.push(e));
    const broken = { ...attempt(), peerAddr: undefined } as unknown as ConnectAttempt;
    Object.defineProperty(broken, 'protocol', {
      get() {
        throw new Error('corrupt attempt');
      },
    });
    for (let i = 0; i < 3; i++) subscriber.connectAbandoned?.({ attempt: broken, stage: 'deciding' });
    subscriber.connectAbandoned?.({ attempt: attempt(), stage: 'deciding' });
    await afterTurn();
    assert.equal(errors.length, 1);
    assert.equal(
      exporter.getFinishedSpans().filter((s) => s.name === 'gateway CONNECT').length,
      1,
      'the next CONNECT is traced as usual',
    );
  });
});

describe('the export queue', () => {
  test('a collector that never answers: spans beyond the bound are dropped and counted, never waited for', async () => {
    let exports = 0;
    const hanging: SpanExporter = {
      export: () => {
        exports++;
      },
      shutdown: async () => {},
    };
    const { processor, counts } = exportQueue(hanging, {
      ...DEFAULT_BATCH,
      maxQueueSize: 4,
      maxExportBatchSize: 2,
      exportTimeoutMillis: 50,
    });
    const provider = new TracerProvider({ spanProcessors: [processor] });
    const t = provider.getTracer('test');
    for (let i = 0; i < 20; i++) t.startSpan(`s${i}`).end();
    // The first full batch went to the exporter, which never returns; one export runs at a time.
    assert.equal(exports, 1);
    assert.equal(
      counts.dropped,
      20 - 2 - 4,
      'beyond the batch in flight and a queue of 4, spans are dropped',
    );
    assert.equal(counts.exported, 0);
    await provider.shutdown().catch(() => undefined);
  });

  test('exports are counted by outcome, and a change of outcome is reported once', async () => {
    const status: string[] = [];
    let ok = false;
    const flaky: SpanExporter = {
      export: (_spans, done) =>
        done({ code: ok ? ExportResultCode.SUCCESS : ExportResultCode.FAILED, error: new Error('down') }),
      shutdown: async () => {},
    };
    const { processor, counts } = exportQueue(
      flaky,
      { ...DEFAULT_BATCH, maxExportBatchSize: 1 },
      (failing, error) => status.push(failing ? `failing: ${error}` : 'recovered'),
    );
    const t = new TracerProvider({ spanProcessors: [processor] }).getTracer('test');
    t.startSpan('a').end();
    await processor.forceFlush().catch(() => undefined);
    t.startSpan('b').end();
    await processor.forceFlush().catch(() => undefined);
    ok = true;
    t.startSpan('c').end();
    await processor.forceFlush();
    assert.deepEqual(counts, { exported: 1, failed: 2, dropped: 0 });
    assert.deepEqual(status, ['failing: down', 'recovered']);
  });
});
