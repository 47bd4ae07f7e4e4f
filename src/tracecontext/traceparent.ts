/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate` headers a
 * caller sends on its CONNECT. The gateway continues that trace in its logs and spans. Both headers are
 * attacker-controlled: only well-formed values are used, anything else is ignored rather than echoed,
 * and `tracestate` is bounded as the specification allows (32 members, 512 characters).
 */
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ALL_ZERO_TRACE = '0'.repeat(32);
const ALL_ZERO_SPAN = '0'.repeat(16);

/** The `sampled` bit of trace-flags: the caller records this trace. */
export const TRACE_FLAG_SAMPLED = 0x01;

export interface TraceContext {
  readonly traceId: string;
  /** The caller's span (the `parent-id` field), which the gateway's span becomes a child of. */
  readonly parentSpanId: string;
  /** trace-flags as sent (bit 0: sampled; the other bits are passed on untouched). */
  readonly flags: number;
  /** The caller's `tracestate`, validated and bounded; absent when none was sent or it was invalid. */
  readonly traceState?: string;
}

/** Only version 00, exactly as specified: a longer or later-version header is not guessed at. */
export function parseTraceparent(value: string | string[] | undefined): TraceContext | undefined {
  if (typeof value !== 'string' || value.length !== 55) return undefined;
  const m = TRACEPARENT.exec(value);
  if (!m) return undefined;
  const traceId = m[1]!;
  const parentSpanId = m[2]!;
  if (traceId === ALL_ZERO_TRACE || parentSpanId === ALL_ZERO_SPAN) return undefined;
  return { traceId, parentSpanId, flags: Number.parseInt(m[3]!, 16) };
}

/**
 * Both headers of one request. `tracestate` only counts alongside a valid `traceparent` (the
 * specification ties them together); several `tracestate` header lines are one comma-joined list.
 */
export function parseTraceContext(
  traceparent: string | string[] | undefined,
  tracestate: string | string[] | undefined,
): TraceContext | undefined {
  const parent = parseTraceparent(traceparent);
  if (parent === undefined) return undefined;
  const state = parseTracestate(tracestate);
  return state === undefined ? parent : { ...parent, traceState: state };
}

/** The specification's bounds: more members than this discards the header; longer lists are cut. */
export const TRACESTATE_MAX_MEMBERS = 32;
export const TRACESTATE_MAX_LENGTH = 512;
/** Members longer than this are the first to go when a list must be cut (the specification's advice). */
const LONG_MEMBER = 128;
/** Input beyond this is not even split: a header this long cannot yield a valid list within bounds. */
const MAX_INPUT = 8192;

// key = simple-key / multi-tenant-key (tenant@system); value: printable ASCII except ',' and '=', no
// trailing space.
const KEY = /^(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})$/;
const VALUE = /^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/;

/**
 * A valid `tracestate` in canonical form (members joined by `,`, optional whitespace removed), cut to
 * 512 characters by dropping members longer than 128 characters first, then from the end; undefined
 * when absent, malformed, holding a duplicate key, or listing more than 32 members.
 */
export function parseTracestate(value: string | string[] | undefined): string | undefined {
  const text = Array.isArray(value) ? value.join(',') : value;
  if (text === undefined || text.length > MAX_INPUT) return undefined;
  const members: string[] = [];
  const keys = new Set<string>();
  for (const raw of text.split(',')) {
    const member = raw.replace(/^[ \t]+|[ \t]+$/g, '');
    // Empty list members are allowed and ignored.
    if (member === '') continue;
    const eq = member.indexOf('=');
    if (eq <= 0) return undefined;
    const key = member.slice(0, eq);
    const val = member.slice(eq + 1);
    if (!KEY.test(key) || !VALUE.test(val) || keys.has(key)) return undefined;
    keys.add(key);
    members.push(member);
    if (members.length > TRACESTATE_MAX_MEMBERS) return undefined;
  }
  const kept = cut(members);
  return kept === '' ? undefined : kept;
}

function cut(members: string[]): string {
  const length = (list: string[]) => list.reduce((n, m) => n + m.length, 0) + Math.max(0, list.length - 1);
  let kept = members;
  if (length(kept) > TRACESTATE_MAX_LENGTH) kept = kept.filter((m) => m.length <= LONG_MEMBER);
  while (kept.length > 0 && length(kept) > TRACESTATE_MAX_LENGTH) kept = kept.slice(0, -1);
  return kept.join(',');
}

/** The `traceparent` header for a span of ours in this trace. */
export function formatTraceparent(traceId: string, spanId: string, flags: number): string {
  return `00-${traceId}-${spanId}-${(flags & 0xff).toString(16).padStart(2, '0')}`;
}
