import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chartPaths } from '../src/chart.ts';
import { age, bytes, clock, rate, short } from '../src/format.ts';
import { LIT_MS, layoutTopology, MAX_PER_COLUMN } from '../src/topology.ts';
import type { Decision, Tunnel } from '../src/types.ts';

const at = (ms: number) => new Date(ms).toISOString();
const decision = (identity: string, dest: string, result: Decision['result'], time: number): Decision => ({
  type: 'decision',
  gateway: 'gw-1',
  time: at(time),
  result,
  status: 200,
  source_identity: identity,
  dest_authority: dest,
  reason: null,
  detail: null,
  protocol: 'HTTP/2',
  source_peer_addr: '127.0.0.1:1',
  tunnel_id: null,
  permission_id: null,
  signing_key_id: null,
});

test('topology: agents → gateways → destinations; edges lit by their newest recent decision', () => {
  const now = 100_000;
  const t = layoutTopology(
    [
      decision('a', 'x:443', 'denied', now - 100),
      decision('a', 'x:443', 'allowed', now - 200),
      decision('b', 'y:443', 'allowed', now - LIT_MS - 1),
    ],
    [{ gateway: 'gw-1', source_identity: 'c', dest_authority: 'y:443' } as Tunnel],
    ['gw-1', 'gw-2'],
    now,
  );
  assert.deepEqual(
    t.nodes.map((n) => [n.kind, n.label]),
    [
      ['agent', 'a'],
      ['agent', 'b'],
      ['agent', 'c'],
      ['gateway', 'gw-1'],
      ['gateway', 'gw-2'],
      ['destination', 'x:443'],
      ['destination', 'y:443'],
    ],
  );
  const edge = (from: string, to: string) => t.edges.find((e) => e.from === from && e.to === to);
  assert.equal(edge('a:a', 'g:gw-1')?.lit, 'denied', 'the newest decision wins');
  assert.equal(edge('a:b', 'g:gw-1')?.lit, undefined, 'older than LIT_MS');
  assert.equal(edge('a:c', 'g:gw-1')?.open, 1);
  for (const n of t.nodes) assert.ok(n.y > 0 && n.y < 1);
});

test('topology: each column is bounded to the most recently seen', () => {
  const many = Array.from({ length: MAX_PER_COLUMN + 5 }, (_, i) =>
    decision(`agent-${i}`, 'x:443', 'allowed', i),
  );
  const t = layoutTopology(many, [], [], 0);
  const agents = t.nodes.filter((n) => n.kind === 'agent');
  assert.equal(agents.length, MAX_PER_COLUMN);
  assert.ok(
    agents.some((n) => n.label === 'agent-0'),
    'the first decisions in the list are the newest',
  );
  assert.ok(!agents.some((n) => n.label === `agent-${MAX_PER_COLUMN + 4}`));
});

test('chart: points map into the box, the limit line stays in view above the data', () => {
  const g = { width: 100, height: 50, end: 10_000, spanMs: 10_000 };
  const p = chartPaths(
    [
      { t: 0, up: 0, down: 0 },
      { t: 10_000, up: 2000, down: 1000 },
    ],
    4000,
    g,
  );
  assert.equal(p.up, 'M0.0,50.0 L100.0,28.3');
  assert.ok(p.limitY !== undefined && p.limitY > 0 && p.limitY < 50);
  assert.ok(p.top > 4000);
  assert.equal(chartPaths([], 0, g).limitY, undefined);
  // Points older than the span are left out.
  assert.equal(chartPaths([{ t: -1, up: 1, down: 1 }], 0, g).up, '');
});

test('format', () => {
  assert.equal(bytes(0), '0 B');
  assert.equal(bytes(1536), '1.5 KiB');
  assert.equal(bytes(10 * 1024 * 1024), '10 MiB');
  assert.equal(rate(2048), '2.0 KiB/s');
  assert.equal(age(75_000), '1m15s');
  assert.equal(age(3_700_000), '1h1m');
  assert.equal(short('sha256:0123456789abcdef'), '0123456789ab');
  assert.equal(short(null), '—');
  assert.match(clock('2026-01-01T00:00:00.120Z'), /^\d\d:\d\d:\d\d\.120$/);
});
