import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { test } from 'node:test';
import { type FeedRecord, feedSubscriber } from '../../src/eventfeed/records.js';
import { Ring } from '../../src/eventfeed/ring.js';
import { formatEvent, lastEventId, SseHub } from '../../src/eventfeed/sse-hub.js';
import { GatewayEvents } from '../../src/session/events.js';
import type { TunnelSession } from '../../src/session/tunnel-session.js';

test('Ring keeps the newest entries, numbered from 1, and answers "what came after seq N"', () => {
  const ring = new Ring<string>(3);
  assert.equal(ring.lastSeq, 0);
  assert.deepEqual(ring.since(0), []);
  for (const v of ['a', 'b', 'c', 'd', 'e']) ring.push(v);
  assert.equal(ring.lastSeq, 5);
  assert.deepEqual(
    ring.since(0).map((e) => [e.seq, e.value, e.json]),
    [
      [3, 'c', '"c"'],
      [4, 'd', '"d"'],
      [5, 'e', '"e"'],
    ],
  );
  assert.deepEqual(
    ring.since(4).map((e) => e.value),
    ['e'],
  );
  assert.deepEqual(ring.since(5), []);
  // A client that missed more than the ring holds gets what is kept, not an error.
  assert.deepEqual(
    ring.since(1).map((e) => e.seq),
    [3, 4, 5],
  );
  assert.throws(() => new Ring(0), RangeError);
});

/** A response whose socket never drains: writableLength grows with every write. */
function stalledResponse(): ServerResponse & { written: string[] } {
  const res = new EventEmitter() as unknown as ServerResponse & { written: string[]; writableLength: number };
  Object.assign(res, {
    written: [] as string[],
    writableLength: 0,
    destroyed: false,
    writableEnded: false,
    writeHead() {
      return res;
    },
    write(chunk: string) {
      res.written.push(chunk);
      (res as { writableLength: number }).writableLength += chunk.length;
      return false;
    },
    end() {},
  });
  return res;
}

test('SseHub: a client that does not drain loses events beyond its buffer and is told how many', () => {
  const hub = new SseHub({ maxClients: 2, maxBufferedBytes: 100, heartbeatMs: 60_000 });
  try {
    const res = stalledResponse();
    assert.equal(hub.open(new EventEmitter() as IncomingMessage, res, [formatEvent('hello', '{}')]), true);
    const event = formatEvent('record', JSON.stringify({ pad: 'x'.repeat(40) }), 1);
    for (let i = 0; i < 10; i++) hub.publish(event);
    const delivered = res.written.filter((w) => w === event).length;
    assert.ok(delivered >= 1 && delivered < 10, `delivered ${delivered}`);
    assert.equal(hub.droppedTotal, 10 - delivered);
    // It drains: the next write is preceded by the count of what it missed.
    (res as unknown as { writableLength: number }).writableLength = 0;
    hub.publish(event);
    const notice = res.written.at(-2) ?? '';
    assert.equal(notice, formatEvent('dropped', JSON.stringify({ dropped: 10 - delivered })));
    assert.equal(res.written.at(-1), event);
  } finally {
    hub.close();
  }
});

test('SseHub: at most maxClients streams; a closed client is forgotten', () => {
  const hub = new SseHub({ maxClients: 1, maxBufferedBytes: 1000, heartbeatMs: 60_000 });
  try {
    const req = new EventEmitter() as IncomingMessage;
    assert.equal(hub.open(req, stalledResponse(), []), true);
    assert.equal(hub.open(new EventEmitter() as IncomingMessage, stalledResponse(), []), false);
    req.emit('close');
    assert.equal(hub.size, 0);
    assert.equal(hub.open(new EventEmitter() as IncomingMessage, stalledResponse(), []), true);
  } finally {
    hub.close();
  }
});

test('SseHub: a stream whose credential ended is closed at the next heartbeat', async () => {
  const hub = new SseHub({ maxClients: 2, maxBufferedBytes: 1000, heartbeatMs: 10 });
  try {
    let valid = true;
    const res = stalledResponse();
    let ended = false;
    res.end = (() => {
      ended = true;
      return res;
    }) as typeof res.end;
    (res as unknown as { writableLength: number }).writableLength = 0;
    res.write = ((chunk: string) => {
      res.written.push(chunk);
      return true;
    }) as typeof res.write;
    hub.open(new EventEmitter() as IncomingMessage, res, [], () => valid);
    await new Promise((r) => setTimeout(r, 30));
    assert.ok(res.written.includes(': keep-alive\n\n'));
    assert.equal(ended, false);
    valid = false;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(ended, true);
    assert.equal(hub.size, 0);
  } finally {
    hub.close();
  }
});

test('lastEventId takes the header or ?since=, and only plain decimal numbers', () => {
  const req = (id?: string) =>
    ({ headers: id === undefined ? {} : { 'last-event-id': id } }) as IncomingMessage;
  const url = new URL('http://x/v1/events');
  assert.equal(lastEventId(req('42'), url), 42);
  assert.equal(lastEventId(req(), new URL('http://x/v1/events?since=7')), 7);
  for (const bad of ['-1', '1e3', '0x10', 'abc', '99999999999999999999'])
    assert.equal(lastEventId(req(bad), url), 0);
});

const session: TunnelSession = {
  id: 'tag-1',
  identity: 'agent-a',
  spki: Buffer.from([1]),
  spkiFingerprint: 'sha256:00',
  destination: { host: 'api.example.com', port: 443, authority: 'api.example.com:443' },
  destAddr: '192.0.2.1:443',
  protocol: 'HTTP/2',
  peerAddr: '127.0.0.1:5000',
  trace: undefined,
  grant: {
    permissionId: 'perm-1',
    signingKeyId: 'org-a',
    scopeId: '1',
    validUntilMono: 1e9,
    endsWith: 'permission',
    cached: false,
  },
  openedAt: 0,
  openedAtMono: 0,
} as unknown as TunnelSession;

test('feed records: the allow is the tunnel opening, a refusal names its reason, a close its bytes', () => {
  const events = new GatewayEvents();
  const records: FeedRecord[] = [];
  events.subscribe(
    feedSubscriber(
      (r) => records.push(r),
      () => Date.UTC(2026, 0, 1),
    ),
  );
  events.emit('tunnelOpened', { session, attempt: {} as never });
  events.emit('connectRejected', {
    attempt: {
      protocol: 'HTTP/1.1',
      peerAddr: '127.0.0.1:6000',
      identity: 'agent-b',
      destination: { host: 'x', port: 443, authority: 'x:443' },
      grant: undefined,
    } as never,
    status: 403,
    reason: { kind: 'denied', denyReason: 'no_matching_permission' },
    detail: 'y'.repeat(1000),
  });
  events.emit('tunnelClosed', {
    session,
    cause: 'revoked',
    reason: 'permission_revoked',
    error: undefined,
    bytesClientToDest: 10,
    bytesDestToClient: 20,
    durationMs: 5,
    throttle: undefined,
  });
  assert.deepEqual(
    records.map((r) => r.type),
    ['decision', 'decision', 'tunnel_closed'],
  );
  const [allow, deny, closed] = records as [
    FeedRecord & Record<string, unknown>,
    Record<string, unknown>,
    Record<string, unknown>,
  ];
  assert.equal(allow['time'], '2026-01-01T00:00:00.000Z');
  assert.equal(allow['result'], 'allowed');
  assert.equal(allow['tunnel_id'], 'tag-1');
  assert.equal(allow['permission_id'], 'perm-1');
  assert.equal(deny['result'], 'denied');
  assert.equal(deny['reason'], 'no_matching_permission');
  assert.equal(deny['source_identity'], 'agent-b');
  assert.ok(String(deny['detail']).length <= 257, 'attacker-sized text is cut');
  assert.equal(closed['close_cause'], 'revoked');
  assert.equal(closed['bytes_dest_to_client'], 20);
});
