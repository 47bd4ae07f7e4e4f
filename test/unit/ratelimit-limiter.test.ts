import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type RateLimitSettings, rateLimitSettings } from '../../src/config/rate-limit.js';
import type { TokenBucket } from '../../src/ratelimit/bucket.js';
import type { DirectionName } from '../../src/ratelimit/direction.js';
import { RateLimiter, type TunnelReservation } from '../../src/ratelimit/limiter.js';
import { FakeClock, FakeSource, KiB, MiB } from './ratelimit-fakes.js';

function settings(table: Partial<Parameters<typeof rateLimitSettings>[0]> = {}): RateLimitSettings {
  return rateLimitSettings({ bytes_per_second: 0, burst_bytes: 1_048_576, ...table });
}

function reserve(limiter: RateLimiter, identity: string): TunnelReservation {
  const r = limiter.reserve(identity);
  assert.ok(r.ok, `reserve(${identity}) refused`);
  return r.reservation;
}

interface FakeTunnel {
  readonly up: FakeSource;
  readonly down: FakeSource;
  throttled: Array<[DirectionName, TokenBucket['kind']]>;
  close(): ReturnType<ReturnType<RateLimiter['attach']>['close']>;
  reservation: TunnelReservation;
}

/** A tunnel whose two directions are endless fake sources, attached to the limiter. */
function tunnel(
  clock: FakeClock,
  limiter: RateLimiter,
  identity: string,
  opts: { upChunk?: number; downChunk?: number; upLimit?: number; downLimit?: number } = {},
): FakeTunnel {
  const reservation = reserve(limiter, identity);
  const up = new FakeSource(clock, opts.upChunk ?? 16 * KiB, { limitBytes: opts.upLimit ?? Infinity });
  const down = new FakeSource(clock, opts.downChunk ?? 64 * KiB, { limitBytes: opts.downLimit ?? 0 });
  const throttled: FakeTunnel['throttled'] = [];
  const throttle = limiter.attach(reservation, { up, down }, (d, b) => throttled.push([d, b.kind]));
  up.gate = (n) => throttle.up.admit(n);
  down.gate = (n) => throttle.down.admit(n);
  return {
    up,
    down,
    throttled,
    reservation,
    close() {
      up.stop();
      down.stop();
      const summary = throttle.close();
      reservation.release();
      return summary;
    },
  };
}

describe('RateLimiter: max_tunnels_per_identity', () => {
  test('refuses beyond the cap, per identity, and frees a slot on release (once)', () => {
    const limiter = new RateLimiter(
      settings({ max_tunnels_per_identity: 2, identities: { wide: { max_tunnels_per_identity: 0 } } }),
      new FakeClock(),
    );
    const a = reserve(limiter, 'agent-a');
    reserve(limiter, 'agent-a');
    const refused = limiter.reserve('agent-a');
    assert.deepEqual(refused, { ok: false, reason: 'too_many_tunnels', maxTunnels: 2, openTunnels: 2 });
    // Another identity has its own count; 0 means unlimited.
    reserve(limiter, 'agent-b');
    for (let i = 0; i < 50; i++) reserve(limiter, 'wide');
    a.release();
    a.release();
    assert.equal(limiter.reserve('agent-a').ok, true);
    assert.equal(limiter.reserve('agent-a').ok, false);
  });

  test('the default cap is 256', () => {
    const limiter = new RateLimiter(settings(), new FakeClock());
    for (let i = 0; i < 256; i++) reserve(limiter, 'agent-a');
    assert.equal(limiter.reserve('agent-a').ok, false);
  });
});

describe('RateLimiter: budgets', () => {
  test('tunnels of one identity share one budget; another identity is not slowed', () => {
    const clock = new FakeClock({ wholeMs: true });
    const limiter = new RateLimiter(
      settings({
        bytes_per_second: 256 * KiB,
        burst_bytes: 64 * KiB,
        identities: { fast: { bytes_per_second: 0 } },
      }),
      clock,
    );
    const shared = [
      tunnel(clock, limiter, 'agent-a'),
      tunnel(clock, limiter, 'agent-a'),
      tunnel(clock, limiter, 'agent-a'),
    ];
    const fast = tunnel(clock, limiter, 'fast', { upLimit: 64 * MiB });
    for (const t of [...shared, fast]) t.up.start();
    clock.advance(10_000);
    const sum = shared.reduce((n, t) => n + t.up.delivered, 0);
    // One 256 KiB/s budget for the three, not three of them.
    assert.ok(Math.abs(sum - (64 * KiB + 2560 * KiB)) <= 3 * 16 * KiB, `shared sum ${sum}`);
    assert.equal(fast.up.delivered, 64 * MiB);
    assert.deepEqual(fast.throttled, []);
    for (const t of shared) assert.ok(t.throttled.length <= 1);
    assert.ok(shared.some((t) => t.throttled.length === 1));
  });

  test('download has its own bucket, off unless configured', () => {
    const clock = new FakeClock({ wholeMs: true });
    const limiter = new RateLimiter(
      settings({ bytes_per_second: 64 * KiB, burst_bytes: 16 * KiB, download_bytes_per_second: 1 * MiB }),
      clock,
    );
    const t = tunnel(clock, limiter, 'agent-a', { downLimit: Infinity });
    t.down.start();
    t.up.start();
    clock.advance(10_000);
    // The upload's slow bucket does not slow the download, and vice versa.
    const down = t.down;
    assert.ok(Math.abs(down.delivered - (16 * KiB + 10 * MiB)) <= 2 * 64 * KiB, `down ${down.delivered}`);
    assert.ok(Math.abs(t.up.delivered - (16 * KiB + 640 * KiB)) <= 2 * 16 * KiB, `up ${t.up.delivered}`);
  });

  test('total_bytes_per_second caps all identities together', () => {
    const clock = new FakeClock({ wholeMs: true });
    const limiter = new RateLimiter(
      settings({ bytes_per_second: 1 * MiB, burst_bytes: 64 * KiB, total_bytes_per_second: 1 * MiB }),
      clock,
    );
    const tunnels = ['a', 'b', 'c', 'd'].map((id) => tunnel(clock, limiter, id));
    for (const t of tunnels) t.up.start();
    clock.advance(10_000);
    const sum = tunnels.reduce((n, t) => n + t.up.delivered, 0);
    // Four identities, each allowed 1 MiB/s, together get the total's 1 MiB/s (plus the bursts).
    assert.ok(sum <= 10 * MiB + 64 * KiB + 4 * 16 * KiB + 4 * 16 * KiB, `sum ${sum}`);
    assert.ok(sum >= 10 * MiB - 4 * 16 * KiB, `sum ${sum}`);
    assert.ok(tunnels.some((t) => t.throttled.some(([, kind]) => kind === 'total_upload')));
  });

  test('"rate limited" is announced once per tunnel and the throttled time is reported', () => {
    const clock = new FakeClock({ wholeMs: true });
    const limiter = new RateLimiter(settings({ bytes_per_second: 16 * KiB, burst_bytes: 16 * KiB }), clock);
    const t = tunnel(clock, limiter, 'agent-a', { upLimit: 160 * KiB });
    t.up.start();
    clock.advance(30_000);
    assert.equal(t.up.delivered, 160 * KiB);
    assert.deepEqual(t.throttled, [['client_to_dest', 'identity_upload']]);
    const summary = t.close();
    // 160 KiB at 16 KiB/s after a 16 KiB burst: held for 9 of the 30 simulated seconds.
    assert.ok(Math.abs(summary.throttledMs - 9000) <= 2, `throttled ${summary.throttledMs} ms`);
    assert.equal(summary.clientToDestThrottledMs, summary.throttledMs);
    assert.equal(summary.destToClientThrottledMs, 0);
  });
});

describe('RateLimiter: reload', () => {
  test('new settings apply in place to running tunnels', () => {
    const clock = new FakeClock({ wholeMs: true });
    const limiter = new RateLimiter(settings({ bytes_per_second: 64 * KiB, burst_bytes: 16 * KiB }), clock);
    const t = tunnel(clock, limiter, 'agent-x');
    t.up.start();
    clock.advance(5000);
    limiter.update(
      settings({
        bytes_per_second: 64 * KiB,
        burst_bytes: 16 * KiB,
        identities: { 'agent-x': { bytes_per_second: 1 * MiB } },
      }),
    );
    const before = t.up.delivered;
    clock.advance(5000);
    assert.ok(Math.abs(t.up.delivered - before - 5 * MiB) <= 2 * 16 * KiB);
    // Turning the limit off releases the tunnel at once.
    limiter.update(settings());
    const held = t.up.holds;
    assert.equal(held, 0);
  });

  test('a lower max_tunnels_per_identity applies to new CONNECTs, open tunnels stay', () => {
    const limiter = new RateLimiter(settings(), new FakeClock());
    const open = [reserve(limiter, 'agent-a'), reserve(limiter, 'agent-a'), reserve(limiter, 'agent-a')];
    limiter.update(settings({ max_tunnels_per_identity: 2 }));
    assert.equal(limiter.reserve('agent-a').ok, false);
    open[0]!.release();
    open[1]!.release();
    assert.equal(limiter.reserve('agent-a').ok, true);
  });
});

describe('RateLimiter: forgetting idle identities', () => {
  test('an identity without tunnels is forgotten once its bucket is full again, not before', () => {
    const clock = new FakeClock({ wholeMs: true });
    const limiter = new RateLimiter(settings({ bytes_per_second: 64 * KiB, burst_bytes: 64 * KiB }), clock);
    const t = tunnel(clock, limiter, 'agent-a', { upLimit: 256 * KiB });
    t.up.start();
    clock.advance(100);
    // 256 KiB sent against a 64 KiB burst: the bucket is deep in debt when the tunnel closes.
    t.close();
    assert.equal(limiter.trackedIdentities, 1);
    // Reconnecting now finds the same, still indebted bucket: no fresh burst.
    const again = tunnel(clock, limiter, 'agent-a', { upLimit: 64 * KiB });
    again.up.start();
    clock.advance(10);
    assert.ok(again.up.delivered <= 16 * KiB, `a reconnect got ${again.up.delivered} bytes at once`);
    again.close();
    // Refilled after ~5 s; the sweep (every 10 s) then forgets it.
    clock.advance(20_000);
    assert.equal(limiter.trackedIdentities, 0);
  });

  test('an identity whose bucket is full is forgotten as soon as its last tunnel closes', () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter(settings({ bytes_per_second: 1 * MiB }), clock);
    for (let i = 0; i < 100; i++) reserve(limiter, `agent-${i}`).release();
    assert.equal(limiter.trackedIdentities, 0);
    assert.equal(clock.active(), 0);
  });
});
