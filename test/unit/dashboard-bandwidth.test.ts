import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BandwidthSeries } from '../../src/dashboard/bandwidth.js';
import type { GatewayTunnel } from '../../src/dashboard/gateway-link.js';

const tunnel = (id: string, identity: string, up: number, down: number, ageMs = 100_000): GatewayTunnel => ({
  tunnel_id: id,
  source_identity: identity,
  dest_authority: 'x:443',
  protocol: 'HTTP/2',
  permission_id: 'p',
  signing_key_id: 'k',
  opened_at: '',
  age_ms: ageMs,
  bytes_client_to_dest: up,
  bytes_dest_to_client: down,
  throttled: false,
});

test('rates are the growth of the counters per interval, summed per identity over every gateway', () => {
  const series = new BandwidthSeries({ windowMs: 60_000, intervalMs: 1000, maxIdentities: 10 });
  // The first sample is a baseline: bytes moved before the dashboard looked are not this second's.
  const first = series.sample(1000, [
    { gateway: 'a', tunnel: tunnel('1', 'agent', 5000, 100) },
    { gateway: 'b', tunnel: tunnel('1', 'agent', 7000, 0) },
  ]);
  assert.deepEqual(
    first.map((t) => t.up_bytes_per_second),
    [0, 0],
  );
  const second = series.sample(2000, [
    { gateway: 'a', tunnel: tunnel('1', 'agent', 6000, 300) },
    { gateway: 'b', tunnel: tunnel('1', 'agent', 9000, 0) },
  ]);
  assert.deepEqual(
    second.map((t) => [t.gateway, t.up_bytes_per_second, t.down_bytes_per_second]),
    [
      ['a', 1000, 200],
      ['b', 2000, 0],
    ],
  );
  assert.deepEqual(series.latest(2000), [{ identity: 'agent', point: { t: 2000, up: 3000, down: 200 } }]);
});

test('a tunnel opened since the last sample counts from zero; a closed one counts up to its close', () => {
  const series = new BandwidthSeries({ windowMs: 60_000, intervalMs: 1000, maxIdentities: 10 });
  series.sample(0, []);
  series.sample(1000, [{ gateway: 'a', tunnel: tunnel('new', 'agent', 4000, 0, 500) }]);
  assert.deepEqual(series.latest(1000)[0]?.point, { t: 1000, up: 4000, down: 0 });
  // It moved 1000 more bytes and closed before the next sample.
  series.closed('a', 'new', 5000, 0);
  series.sample(2000, []);
  assert.deepEqual(series.latest(2000)[0]?.point, { t: 2000, up: 1000, down: 0 });
  // A close of a tunnel never sampled changes nothing.
  series.closed('a', 'unknown', 1e9, 0);
  series.sample(3000, []);
  assert.deepEqual(series.latest(3000), []);
});

test('points older than the window are dropped; identities are bounded, least recently active first', () => {
  const series = new BandwidthSeries({ windowMs: 3000, intervalMs: 1000, maxIdentities: 2 });
  for (let t = 0; t <= 10_000; t += 1000) {
    series.sample(t, [{ gateway: 'a', tunnel: tunnel('1', 'steady', t, 0) }]);
  }
  const steady = series.snapshot().find((s) => s.identity === 'steady');
  assert.ok(steady !== undefined);
  assert.equal(steady.points.length, 4);
  assert.equal(steady.points.at(-1)?.t, 10_000);
  series.sample(11_000, [
    { gateway: 'a', tunnel: tunnel('1', 'steady', 11_000, 0) },
    { gateway: 'a', tunnel: tunnel('2', 'x', 0, 0) },
    { gateway: 'a', tunnel: tunnel('3', 'y', 0, 0) },
  ]);
  assert.equal(series.identities().length, 2);
  // An identity with no tunnel for the whole window is forgotten.
  for (let t = 12_000; t <= 16_000; t += 1000) series.sample(t, []);
  assert.deepEqual(series.identities(), []);
});
