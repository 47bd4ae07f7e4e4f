import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

/**
 * A small OTLP trace receiver for the tests (Debian has no collector): it accepts exports over gRPC,
 * HTTP/protobuf and HTTP/JSON, decodes them independently of the exporters (protobufjs over the OTLP
 * messages' field numbers below, JSON as the OTLP/JSON mapping defines it) and keeps the spans.
 */

// The messages of opentelemetry/proto/{collector/trace,trace,common,resource}/v1 this test reads, with the
// field numbers of the OTLP specification.
const OTLP_PROTO = `
syntax = "proto3";
package otlp;
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message Span {
  bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4; fixed32 flags = 16;
  string name = 5; int32 kind = 6; fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9; uint32 dropped_attributes_count = 10;
  repeated Event events = 11; uint32 dropped_events_count = 12;
  repeated Link links = 13; uint32 dropped_links_count = 14; Status status = 15;
  message Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
  message Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4; uint32 dropped_attributes_count = 5; fixed32 flags = 6; }
}
message Status { string message = 2; int32 code = 3; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
    ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7; }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
`;
const ExportRequest = protobuf.parse(OTLP_PROTO).root.lookupType('otlp.ExportTraceServiceRequest');

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';

export interface ReceivedSpan {
  readonly service: string;
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly traceState: string;
  readonly name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client. */
  readonly kind: number;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly events: ReadonlyArray<{
    readonly name: string;
    readonly attributes: Readonly<Record<string, unknown>>;
  }>;
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error. */
  readonly statusCode: number;
}

export interface OtlpReceiver {
  readonly protocol: OtlpProtocol;
  /** What to configure as the endpoint: `http://127.0.0.1:PORT` (a base URL for the HTTP protocols). */
  readonly endpoint: string;
  readonly spans: ReceivedSpan[];
  /** Export requests received (content type as sent), for asserting the transport. */
  readonly requests: string[];
  /** Bytes of export requests received (after decompression). */
  bytes(): number;
  /** Resolves once `predicate` holds for the spans received so far (re-checked on every export). */
  waitFor(
    predicate: (spans: readonly ReceivedSpan[]) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<void>;
  close(): Promise<void>;
}

/**
 * `decode: false` (the benchmark) only counts the exports and their bytes: a collector's work must not
 * load the machine the gateway is measured on more than receiving does.
 */
export async function startOtlpReceiver(
  protocol: OtlpProtocol,
  options: { readonly decode?: boolean } = {},
): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: string[] = [];
  const waiters = new Set<() => void>();
  const decode = options.decode !== false;
  let bytes = 0;
  const received = (body: Buffer, json: boolean, contentType: string) => {
    requests.push(contentType);
    bytes += body.length;
    if (!decode) return;
    spans.push(...flatten(json ? decodeJson(body) : decodeProtobuf(body)));
    for (const w of [...waiters]) w();
  };
  let endpoint: string;
  let close: () => Promise<void>;
  if (protocol === 'grpc') {
    const server = new grpc.Server();
    const raw = (b: Buffer) => b;
    server.addService(
      {
        Export: {
          path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
          requestStream: false,
          responseStream: false,
          requestSerialize: raw,
          requestDeserialize: raw,
          responseSerialize: raw,
          responseDeserialize: raw,
        },
      },
      {
        Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, done: grpc.sendUnaryData<Buffer>) => {
          received(call.request, false, 'application/grpc');
          // An empty ExportTraceServiceResponse: full success.
          done(null, Buffer.alloc(0));
        },
      },
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    endpoint = `http://127.0.0.1:${port}`;
    close = () =>
      new Promise((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000).unref();
      });
  } else {
    const server = createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        const type = req.headers['content-type'] ?? '';
        if (req.method !== 'POST' || req.url !== '/v1/traces') {
          res.writeHead(404).end();
          return;
        }
        try {
          received(body, type.startsWith('application/json'), type);
        } catch (error) {
          res.writeHead(400).end(String(error));
          return;
        }
        const json = type.startsWith('application/json');
        res.writeHead(200, { 'content-type': json ? 'application/json' : 'application/x-protobuf' });
        res.end(json ? '{}' : Buffer.alloc(0));
      })();
    });
    endpoint = `http://127.0.0.1:${await listen(server)}`;
    close = () => closeServer(server);
  }
  return {
    protocol,
    endpoint,
    spans,
    requests,
    bytes: () => bytes,
    waitFor(predicate, what, timeoutMs = 30_000) {
      if (predicate(spans)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`OTLP receiver: no ${what} within ${timeoutMs} ms; got ${describe(spans)}`));
        }, timeoutMs);
        const check = () => {
          if (!predicate(spans)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        waiters.add(check);
      });
    },
    close,
  };
}

/**
 * A collector that accepts connections and export requests and never answers them: the "slow
 * collector" a gateway must not wait for. Returns its base URL.
 */
export async function startSilentCollector(): Promise<{
  endpoint: string;
  received: () => number;
  close(): Promise<void>;
}> {
  let count = 0;
  const server = createServer((req) => {
    count++;
    req.resume();
  });
  const port = await listen(server);
  return { endpoint: `http://127.0.0.1:${port}`, received: () => count, close: () => closeServer(server) };
}

interface DecodedRequest {
  resourceSpans?: Array<{
    resource?: { attributes?: KeyValue[] };
    scopeSpans?: Array<{ spans?: RawSpan[] }>;
  }>;
}
interface KeyValue {
  key: string;
  value?: Record<string, unknown>;
}
interface RawSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  traceState?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: KeyValue[];
  events?: Array<{ name?: string; attributes?: KeyValue[] }>;
  status?: { code?: number };
}

function decodeProtobuf(body: Buffer): DecodedRequest {
  const message = ExportRequest.decode(body);
  // Ids as hex (bytes → hex below), 64-bit integers as decimal strings.
  const object = ExportRequest.toObject(message, { longs: String, bytes: String, defaults: false });
  const hex = (b64: unknown) => (typeof b64 === 'string' ? Buffer.from(b64, 'base64').toString('hex') : '');
  for (const rs of (object as DecodedRequest).resourceSpans ?? []) {
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        s.traceId = hex(s.traceId);
        s.spanId = hex(s.spanId);
        s.parentSpanId = hex(s.parentSpanId);
      }
    }
  }
  return object as DecodedRequest;
}

/** OTLP/JSON: ids are hex strings already, enums numbers, 64-bit integers strings or numbers. */
function decodeJson(body: Buffer): DecodedRequest {
  return JSON.parse(body.toString('utf8')) as DecodedRequest;
}

function flatten(request: DecodedRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const service = String(attributesOf(rs.resource?.attributes)['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          traceId: s.traceId ?? '',
          spanId: s.spanId ?? '',
          parentSpanId: s.parentSpanId ?? '',
          traceState: s.traceState ?? '',
          name: s.name ?? '',
          kind: Number(s.kind ?? 0),
          startNs: BigInt(s.startTimeUnixNano ?? 0),
          endNs: BigInt(s.endTimeUnixNano ?? 0),
          attributes: attributesOf(s.attributes),
          events: (s.events ?? []).map((e) => ({
            name: e.name ?? '',
            attributes: attributesOf(e.attributes),
          })),
          statusCode: Number(s.status?.code ?? 0),
        });
      }
    }
  }
  return out;
}

function attributesOf(list: KeyValue[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const { key, value } of list ?? []) {
    if (value === undefined) continue;
    if ('stringValue' in value) out[key] = value['stringValue'];
    else if ('intValue' in value) out[key] = Number(value['intValue']);
    else if ('doubleValue' in value) out[key] = Number(value['doubleValue']);
    else if ('boolValue' in value) out[key] = value['boolValue'];
    else out[key] = value;
  }
  return out;
}

function describe(spans: readonly ReceivedSpan[]): string {
  return spans.length === 0 ? 'no spans' : spans.map((s) => `${s.service}/${s.name}`).join(', ');
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  return req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
