import type { DecisionRecord, FeedRecord, TunnelClosedRecord } from '../eventfeed/records.js';

/**
 * OTLP/HTTP JSON (the OpenTelemetry protocol's JSON encoding) → feed records, so that a collector fed by
 * the original Rust gateway (or by this one) drives the dashboard too. Only what describes a decision or
 * a closed tunnel is kept: log records and span events named `CONNECT allowed`, `CONNECT denied` and
 * `tunnel closed` (the interop contract's log events), with their attributes as the log's fields. Anything
 * else in the export is counted and ignored. Every value is attacker-shaped (whoever holds the ingest
 * token), so fields are type-checked and cut, and the number of records per export is bounded.
 */

export interface OtlpResult {
  readonly records: Array<{ source: string; record: FeedRecord }>;
  /** Items that were not decisions or closes (or were malformed): reported back as "rejected" only when malformed. */
  readonly ignored: number;
  readonly malformed: number;
}

/** Records taken from one export at most. */
export const MAX_RECORDS_PER_EXPORT = 10_000;
const MAX_TEXT = 256;

type Attrs = Record<string, string | number | boolean>;

export function tracesToRecords(body: unknown): OtlpResult {
  const out = new Collector();
  for (const rs of arrayAt(body, 'resourceSpans')) {
    const source = sourceOf(rs);
    for (const ss of arrayAt(rs, 'scopeSpans')) {
      for (const span of arrayAt(ss, 'spans')) {
        const spanAttrs = attributes(field(span, 'attributes'));
        const events = arrayAt(span, 'events');
        if (events.length === 0) out.ignored++;
        for (const event of events) {
          const name = field(event, 'name');
          const at = nanosToIso(field(event, 'timeUnixNano')) ?? nanosToIso(field(span, 'endTimeUnixNano'));
          out.add(
            source,
            typeof name === 'string' ? name : '',
            { ...spanAttrs, ...attributes(field(event, 'attributes')) },
            at,
          );
        }
      }
    }
  }
  return out.result();
}

export function logsToRecords(body: unknown): OtlpResult {
  const out = new Collector();
  for (const rl of arrayAt(body, 'resourceLogs')) {
    const source = sourceOf(rl);
    for (const sl of arrayAt(rl, 'scopeLogs')) {
      for (const log of arrayAt(sl, 'logRecords')) {
        const attrs = attributes(field(log, 'attributes'));
        const bodyValue = anyValue(field(log, 'body'));
        // The event's name is the body (tracing's message) or, for JSON-line bridges, a `msg` attribute.
        const name =
          typeof bodyValue === 'string' ? bodyValue : String(attrs['msg'] ?? attrs['message'] ?? '');
        const at = nanosToIso(field(log, 'timeUnixNano')) ?? nanosToIso(field(log, 'observedTimeUnixNano'));
        out.add(source, name, attrs, at);
      }
    }
  }
  return out.result();
}

class Collector {
  readonly records: Array<{ source: string; record: FeedRecord }> = [];
  ignored = 0;
  malformed = 0;

  add(source: string, name: string, a: Attrs, at: string | undefined): void {
    if (this.records.length >= MAX_RECORDS_PER_EXPORT) {
      this.ignored++;
      return;
    }
    const time = at ?? new Date().toISOString();
    if (name === 'CONNECT allowed' || name === 'CONNECT denied') {
      this.records.push({ source, record: decision(name === 'CONNECT allowed', a, time) });
    } else if (name === 'tunnel closed') {
      const closed = tunnelClosed(a, time);
      if (closed === undefined) this.malformed++;
      else this.records.push({ source, record: closed });
    } else {
      this.ignored++;
    }
  }

  result(): OtlpResult {
    return { records: this.records, ignored: this.ignored, malformed: this.malformed };
  }
}

function decision(allowed: boolean, a: Attrs, time: string): DecisionRecord {
  return {
    type: 'decision',
    time,
    result: allowed ? 'allowed' : 'denied',
    status: allowed ? 200 : 403,
    source_identity: text(a['source_identity']),
    dest_authority: text(a['dest_authority']),
    reason: allowed ? null : (text(a['deny_reason']) ?? 'unknown'),
    detail: text(a['deny_detail']),
    protocol: text(a['protocol']) ?? 'HTTP/2',
    source_peer_addr: text(a['source_peer_addr']) ?? '',
    tunnel_id: text(a['tunnel_id']),
    permission_id: text(a['permission_id']),
    signing_key_id: text(a['signing_key_id']),
  };
}

function tunnelClosed(a: Attrs, time: string): TunnelClosedRecord | undefined {
  const up = count(a['bytes_client_to_dest']);
  const down = count(a['bytes_dest_to_client']);
  if (up === undefined || down === undefined) return undefined;
  return {
    type: 'tunnel_closed',
    time,
    tunnel_id: text(a['tunnel_id']) ?? '',
    source_identity: text(a['source_identity']) ?? '',
    dest_authority: text(a['dest_authority']) ?? '',
    protocol: text(a['protocol']) ?? 'HTTP/2',
    permission_id: text(a['permission_id']) ?? '',
    signing_key_id: text(a['signing_key_id']) ?? '',
    close_cause: text(a['close_cause']) ?? 'completed',
    close_reason: text(a['close_reason']),
    bytes_client_to_dest: up,
    bytes_dest_to_client: down,
    duration_ms: count(a['duration_ms']) ?? 0,
  };
}

/** Where the records came from: the exporting service's instance, for the gateway column. */
function sourceOf(resource: unknown): string {
  const a = attributes(field(field(resource, 'resource'), 'attributes'));
  const name = text(a['service.instance.id']) ?? text(a['host.name']) ?? text(a['service.name']) ?? 'unknown';
  return `otlp:${name.slice(0, 64)}`;
}

function attributes(list: unknown): Attrs {
  const out: Attrs = {};
  if (!Array.isArray(list)) return out;
  for (const kv of list.slice(0, 128)) {
    const key = field(kv, 'key');
    const value = anyValue(field(kv, 'value'));
    if (typeof key === 'string' && value !== undefined) out[key] = value;
  }
  return out;
}

/** An OTLP AnyValue: strings, booleans, numbers (int64 arrives as a decimal string in JSON). */
function anyValue(v: unknown): string | number | boolean | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o['stringValue'] === 'string') return o['stringValue'];
  if (typeof o['boolValue'] === 'boolean') return o['boolValue'];
  if (typeof o['doubleValue'] === 'number') return o['doubleValue'];
  const int = o['intValue'];
  if (typeof int === 'number') return int;
  if (typeof int === 'string' && /^-?[0-9]{1,19}$/.test(int)) return Number(int);
  return undefined;
}

function nanosToIso(v: unknown): string | undefined {
  const text = typeof v === 'number' ? String(v) : v;
  if (typeof text !== 'string' || !/^[0-9]{1,20}$/.test(text) || text === '0') return undefined;
  const ms = Number(BigInt(text) / 1_000_000n);
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function text(v: unknown): string | null {
  if (typeof v !== 'string' || v === '') return null;
  return v.length > MAX_TEXT ? `${v.slice(0, MAX_TEXT)}…` : v;
}

function count(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

function field(o: unknown, key: string): unknown {
  return typeof o === 'object' && o !== null && !Array.isArray(o)
    ? (o as Record<string, unknown>)[key]
    : undefined;
}

function arrayAt(o: unknown, key: string): unknown[] {
  const v = field(o, key);
  return Array.isArray(v) ? v : [];
}
