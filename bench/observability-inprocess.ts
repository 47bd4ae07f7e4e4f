/**
 * The subscribers' own CPU per tunnel, without network or a gateway around them: the events of one
 * tunnel (handshake, registry query, 200, close) are published 20,000 times to the metrics and/or the
 * trace subscriber, whose export queue feeds an exporter that serializes each batch to OTLP protobuf
 * (what the OTLP exporters send) and drops it.
 *
 *   node --import tsx bench/observability-inprocess.ts [none|metrics|tracing-build|tracing|both]
 *
 * Runs the TypeScript sources under tsx (which adds a little per function call over the built dist/).
 */
import { ExportResultCode } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, ParentBasedSampler, type SpanExporter } from '@opentelemetry/sdk-trace';
import { parseDestination } from '../src/destination/normalize.js';
import { GatewayMetrics } from '../src/metrics/gateway-metrics.js';
import { metricsSubscriber } from '../src/metrics/gateway-recorder.js';
import type { ConnectAttempt } from '../src/session/events.js';
import { GatewayEvents } from '../src/session/events.js';
import type { TunnelSession } from '../src/session/tunnel-session.js';
import { connectSpanSubscriber } from '../src/tracing/connect-spans.js';
import { exportQueue } from '../src/tracing/pipeline.js';
import { SpanRecorder } from '../src/tracing/recorded-spans.js';
import { DEFAULT_BATCH } from '../src/tracing/settings.js';

const mode = process.argv[2] ?? 'both';
const TUNNELS = 20_000;
const WARMUP = 5_000;

const events = new GatewayEvents();
if (mode === 'metrics' || mode === 'both') {
  events.subscribe(metricsSubscriber(new GatewayMetrics({ enabled: false, maxIdentities: 1 })));
}
let bytes = 0;
if (mode.startsWith('tracing') || mode === 'both') {
  const exporter: SpanExporter = {
    export(spans, done) {
      if (mode !== 'tracing-build') bytes += ProtobufTraceSerializer.serializeRequest(spans)?.length ?? 0;
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: async () => {},
  };
  const { processor } = exportQueue(exporter, { ...DEFAULT_BATCH, maxQueueSize: 1_000_000 });
  const sampler = new ParentBasedSampler({ root: new AlwaysOnSampler() });
  const recorder = new SpanRecorder(
    processor,
    resourceFromAttributes({ 'service.name': 'bench' }),
    { name: 'bench' },
    sampler,
  );
  events.subscribe(connectSpanSubscriber(recorder));
}

const destination = parseDestination('api.example.com');
function oneTunnel(i: number): void {
  const t = performance.now();
  const trace = { traceId: 'a'.repeat(32), parentSpanId: 'b'.repeat(16), flags: 1 };
  const attempt = {
    protocol: 'HTTP/2',
    peerAddr: '127.0.0.1:5000',
    identity: 'agent-a',
    claimedIdentity: null,
    spki: Buffer.alloc(0),
    spkiFingerprint: 'f',
    rawAuthority: 'api.example.com',
    trace,
    startedAt: t,
    destination,
    grant: { permissionId: 'p', signingKeyId: 'k', cached: false },
    policy: { start: t, end: t + 0.2 },
    dns: { start: t + 0.2, end: t + 0.3 },
    dial: { start: t + 0.3, end: t + 0.4 },
  } as ConnectAttempt;
  const session = {
    id: `s${i}`,
    identity: 'agent-a',
    destination,
    protocol: 'HTTP/2',
    destAddr: '192.0.2.1',
    grant: { permissionId: 'p', signingKeyId: 'k', scopeId: '1', cached: false },
    openedAtMono: t + 0.5,
  } as unknown as TunnelSession;
  events.emit('handshakeCompleted', { peerAddr: '127.0.0.1:5000', alpn: 'h2', resumed: false });
  events.emit('registryQuery', { outcome: 'ok', durationMs: 0.2 });
  events.emit('tunnelOpened', { session, attempt });
  events.emit('tunnelClosed', {
    session,
    cause: 'completed',
    reason: undefined,
    error: undefined,
    bytesClientToDest: 1024,
    bytesDestToClient: 1024,
    durationMs: 2,
    throttle: undefined,
  });
}

// The export queue flushes on a 5 s timer (or at 512 spans): wait past it so every span is exported.
const settle = () => new Promise((resolve) => setTimeout(resolve, 6000));
for (let i = 0; i < WARMUP; i++) oneTunnel(i);
await settle();
const before = process.cpuUsage();
for (let i = 0; i < TUNNELS; i++) oneTunnel(i);
await settle();
const used = process.cpuUsage(before);
console.log(
  `${mode}: ${((used.user + used.system) / TUNNELS).toFixed(1)} µs CPU per tunnel` +
    (bytes > 0 ? `, ${(bytes / (TUNNELS + WARMUP)).toFixed(0)} bytes of OTLP per tunnel` : ''),
);
