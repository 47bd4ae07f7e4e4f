import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RESUME_GRACE_MS, TokenBucket } from '../../src/ratelimit/bucket.js';
import { ThrottledDirection, type ThrottleListener } from '../../src/ratelimit/direction.js';
import type { BucketLimit } from '../../src/ratelimit/settings.js';
import { FakeClock, FakeSource, KiB, MiB } from './ratelimit-fakes.js';

const quiet: ThrottleListener = { onHeld: () => {}, onReleased: () => {} };

function limit(bytesPerSecond: number, burstBytes: number): BucketLimit {
  return { bytesPerSecond, burstBytes };
}

/** A source of `chunk`-byte reads whose every chunk passes through `buckets`. */
function source(
  clock: FakeClock,
  buckets: readonly [TokenBucket] | readonly [TokenBucket, TokenBucket],
  chunk: number,
  opts: ConstructorParameters<typeof FakeSource>[2] = {},
): { src: FakeSource; dir: ThrottledDirection } {
  const src = new FakeSource(clock, chunk, opts);
  const dir = new ThrottledDirection('client_to_dest', src, buckets, clock, quiet);
  src.onChunk = (n) => dir.onChunk(n);
  return { src, dir };
}

describe('TokenBucket: the configured rate holds exactly', () => {
  for (const [name, rate, burst, chunk] of [
    ['burst larger than a chunk', 1 * MiB, 256 * KiB, 16 * KiB],
    [
      'burst smaller than a chunk (the original gateway fell back to one chunk per second)',
      1 * MiB,
      4 * KiB,
      64 * KiB,
    ],
    ['1 KiB/s with 16 KiB chunks', 1 * KiB, 1 * KiB, 16 * KiB],
    ['100 MiB/s with a 1 KiB burst', 100 * MiB, 1 * KiB, 64 * KiB],
  ] as const) {
    test(name, () => {
      const clock = new FakeClock();
      const bucket = new TokenBucket('identity_upload', limit(rate, burst), clock);
      const { src } = source(clock, [bucket], chunk);
      src.start();
      const seconds = rate < 10 * KiB ? 200 : 10;
      clock.advance(seconds * 1000);
      const allowed = burst + rate * seconds;
      // Debt model: the chunk that crosses the line is forwarded, so the overshoot is below one chunk,
      // and nothing is lost to wake-ups (the shortfall is below one chunk too).
      assert.ok(src.delivered <= allowed + chunk, `${src.delivered} > ${allowed} + one chunk`);
      assert.ok(src.delivered >= allowed - chunk, `${src.delivered} < ${allowed} − one chunk`);
    });
  }

  test('late timers (whole milliseconds, +2 ms) cost no rate, even with a tiny burst at 100 MiB/s', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 2 });
    const rate = 100 * MiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, 1 * KiB), clock);
    const { src } = source(clock, [bucket], 16 * KiB, { resumeMs: 0.05 });
    src.start();
    clock.advance(5000);
    const allowed = 1 * KiB + rate * 5;
    // At the end the source may be waiting for a timer that is due (plus late): that much is not yet
    // delivered, but it is not lost either.
    const pending = rate * 0.004;
    assert.ok(src.delivered <= allowed + 16 * KiB, `delivered ${src.delivered}, allowed ${allowed}`);
    assert.ok(
      src.delivered >= allowed - 16 * KiB - pending,
      `delivered ${src.delivered}, allowed ${allowed}`,
    );
  });

  test('a slow resume (up to the grace period) costs no rate', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 1 });
    const rate = 10 * MiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, 1 * KiB), clock);
    const { src } = source(clock, [bucket], 64 * KiB, { resumeMs: RESUME_GRACE_MS - 1 });
    src.start();
    clock.advance(10_000);
    assert.ok(Math.abs(src.delivered - rate * 10) <= 64 * KiB, `delivered ${src.delivered}`);
  });

  test('the debt never exceeds one chunk per source, and one timer serves all waiters', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(1 * MiB, 8 * KiB), clock);
    const sources = Array.from({ length: 8 }, () => source(clock, [bucket], 32 * KiB).src);
    for (const s of sources) s.start();
    let lowest = 0;
    for (let i = 0; i < 2000; i++) {
      clock.advance(1);
      lowest = Math.min(lowest, bucket.level());
      assert.ok(clock.active() <= 1, 'more than one timer armed for one bucket');
    }
    assert.ok(lowest >= -8 * 32 * KiB, `debt ${-lowest} exceeds one chunk per source`);
    // Far fewer timers than chunks: waits are batched, never one sleep per chunk.
    const chunks = sources.reduce((n, s) => n + s.chunks, 0);
    assert.ok(clock.timersArmed <= chunks, `${clock.timersArmed} timers for ${chunks} chunks`);
  });
});

describe('TokenBucket: sharing', () => {
  test('tunnels sharing a bucket get equal shares and the sum holds the rate', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 1 });
    const rate = 1 * MiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, 64 * KiB), clock);
    // Staggered starts and different read sizes: turns are still taken chunk by chunk.
    const sources = [16 * KiB, 16 * KiB, 16 * KiB, 16 * KiB].map((c) => source(clock, [bucket], c).src);
    sources.forEach((s, i) => {
      clock.advance(i * 3);
      s.start();
    });
    clock.advance(1000);
    const warm = sources.map((s) => s.delivered);
    clock.advance(20_000);
    const total = sources.reduce((n, s) => n + s.delivered, 0);
    assert.ok(Math.abs(total - (64 * KiB + rate * 21.009)) <= 4 * 16 * KiB, `total ${total}`);
    // The first tunnel had the burst to itself; from then on turns are equal.
    const shares = sources.map((s, i) => s.delivered - warm[i]!);
    const spread = Math.max(...shares) - Math.min(...shares);
    assert.ok(spread <= 2 * 16 * KiB, `shares ${shares.join(', ')}`);
  });

  test('a tunnel with small reads gets as many bytes as one with large reads', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(256 * KiB, 16 * KiB), clock);
    const big = source(clock, [bucket], 64 * KiB).src;
    const small = source(clock, [bucket], 1 * KiB).src;
    big.start();
    small.start();
    clock.advance(10_000);
    // Turns are fair in bytes (deficit round robin), not in reads: 1 KiB reads get as many bytes.
    assert.ok(
      Math.abs(small.delivered - big.delivered) <= 64 * KiB + 16 * KiB,
      `small ${small.delivered} bytes, big ${big.delivered}`,
    );
    assert.ok(small.chunks > 10 * big.chunks);
  });

  test('an identity bucket and the total bucket both hold a chunk', () => {
    const clock = new FakeClock({ wholeMs: true });
    const total = new TokenBucket('total_upload', limit(1 * MiB, 64 * KiB), clock);
    const a = new TokenBucket('identity_upload', limit(1 * MiB, 64 * KiB), clock);
    const b = new TokenBucket('identity_upload', limit(1 * MiB, 64 * KiB), clock);
    const sa = source(clock, [a, total], 16 * KiB).src;
    const sb = source(clock, [b, total], 16 * KiB).src;
    sa.start();
    sb.start();
    clock.advance(10_000);
    const sum = sa.delivered + sb.delivered;
    // Each identity could do 1 MiB/s alone; together they get the total's 1 MiB/s.
    assert.ok(Math.abs(sum - (64 * KiB + 10 * MiB)) <= 4 * 16 * KiB, `sum ${sum}`);
    assert.ok(Math.abs(sa.delivered - sb.delivered) <= 2 * 16 * KiB, `${sa.delivered} vs ${sb.delivered}`);
  });

  test('a released tunnel with nothing to send does not stall the others', () => {
    const clock = new FakeClock({ wholeMs: true });
    const rate = 1 * MiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, 16 * KiB), clock);
    // Sends a few chunks, gets throttled, then has nothing more once released.
    const quietOne = source(clock, [bucket], 16 * KiB, { limitBytes: 64 * KiB }).src;
    const busy = source(clock, [bucket], 16 * KiB).src;
    quietOne.start();
    busy.start();
    clock.advance(10_000);
    assert.equal(quietOne.delivered, 64 * KiB);
    const allowed = 16 * KiB + rate * 10;
    assert.ok(Math.abs(quietOne.delivered + busy.delivered - allowed) <= 2 * 16 * KiB);
  });

  test('a tunnel opened while others wait takes its turn before its first read', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 16 * KiB), clock);
    const first = source(clock, [bucket], 64 * KiB);
    first.src.start();
    clock.advance(10);
    assert.ok(first.src.holds > 0);
    // Fifteen more tunnels: none reads a chunk "for free" while the bucket is in debt.
    const late = Array.from({ length: 15 }, () => source(clock, [bucket], 64 * KiB));
    for (const t of late) {
      t.dir.join();
      t.src.start();
    }
    clock.advance(10);
    assert.equal(
      late.reduce((n, t) => n + t.src.delivered, 0),
      0,
    );
    assert.equal(bucket.waiters, 16);
    // From then on one 64 KiB chunk per second, in turn.
    clock.advance(16_000);
    assert.ok(
      late.every((t) => t.src.chunks === 1),
      late.map((t) => t.src.chunks).join(','),
    );
  });

  test('tunnels opened together share the burst instead of each reading a chunk on top of it', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 32 * KiB), clock);
    const tunnels = Array.from({ length: 16 }, () => source(clock, [bucket], 64 * KiB));
    for (const t of tunnels) t.dir.join();
    for (const t of tunnels) t.src.start();
    clock.advance(5);
    // First reads are estimated at 16 KiB: three start while the 32 KiB burst covers the earlier
    // promises (0, 16, 32 KiB); the other thirteen wait their turn.
    assert.equal(tunnels.filter((t) => t.src.delivered > 0).length, 3);
  });

  test('a joined tunnel that never reads does not hold the others up for long', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 16 * KiB), clock);
    const idle = source(clock, [bucket], 16 * KiB, { limitBytes: 0 });
    idle.dir.join();
    idle.src.start();
    const busy = source(clock, [bucket], 16 * KiB);
    busy.dir.join();
    busy.src.start();
    clock.advance(10_000);
    // The idle one's 16 KiB promise lapses; the busy one still gets the whole rate.
    assert.ok(Math.abs(busy.src.delivered - (16 * KiB + 640 * KiB)) <= 2 * 16 * KiB, `${busy.src.delivered}`);
  });

  test('a tunnel that leaves while queued does not stall the queue', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(1 * MiB, 16 * KiB), clock);
    const leaving = source(clock, [bucket], 16 * KiB);
    const staying = source(clock, [bucket], 16 * KiB);
    leaving.src.start();
    staying.src.start();
    clock.advance(50);
    leaving.src.stop();
    leaving.dir.close();
    const before = staying.src.delivered;
    clock.advance(1000);
    assert.ok(staying.src.delivered - before >= 1 * MiB - 2 * 16 * KiB);
    assert.equal(bucket.waiters <= 1, true);
  });
});

describe('TokenBucket: burst', () => {
  test('after idling, the bucket passes at most its burst at once', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket('identity_upload', limit(1 * MiB, 64 * KiB), clock);
    const { src } = source(clock, [bucket], 16 * KiB, { gapMs: 0 });
    clock.advance(60_000);
    src.start();
    clock.advance(0.5);
    // 64 KiB of burst plus the chunk that crossed into debt, plus half a millisecond of refill.
    assert.ok(src.delivered <= 64 * KiB + 16 * KiB + 1 * MiB * 0.0005 + 1, `${src.delivered}`);
  });

  test('tokens owed while waiting are not kept once the released tunnel goes quiet', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 3 });
    const bucket = new TokenBucket('identity_upload', limit(10 * MiB, 1 * KiB), clock);
    const { src } = source(clock, [bucket], 64 * KiB, { limitBytes: 256 * KiB });
    src.start();
    clock.advance(1000);
    assert.equal(src.delivered, 256 * KiB);
    assert.equal(bucket.level(), 1 * KiB);
    assert.equal(bucket.isIdleAndFull(), true);
  });
});

describe('TokenBucket: reconfigure (config reload)', () => {
  test('a new rate applies to waiting tunnels at once', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 16 * KiB), clock);
    const { src } = source(clock, [bucket], 16 * KiB);
    src.start();
    clock.advance(5000);
    bucket.reconfigure(limit(1 * MiB, 16 * KiB));
    const before = src.delivered;
    clock.advance(5000);
    const delta = src.delivered - before;
    // At most one 64 KiB/s debt (one chunk) is repaid at the new rate first.
    assert.ok(Math.abs(delta - 5 * MiB) <= 2 * 16 * KiB, `delta ${delta}`);
  });

  test('switching off releases every waiter; switching on limits running tunnels', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 16 * KiB), clock);
    const sources = [source(clock, [bucket], 16 * KiB).src, source(clock, [bucket], 16 * KiB).src];
    for (const s of sources) s.start();
    clock.advance(1000);
    assert.ok(sources.some((s) => s.holds > 0));
    bucket.reconfigure(limit(0, 16 * KiB));
    assert.equal(bucket.limited, false);
    assert.ok(sources.every((s) => s.holds === 0));
    assert.equal(bucket.waiters, 0);
    bucket.reconfigure(limit(128 * KiB, 16 * KiB));
    const before = sources[0]!.delivered + sources[1]!.delivered;
    clock.advance(10_000);
    const delta = sources[0]!.delivered + sources[1]!.delivered - before;
    assert.ok(Math.abs(delta - (16 * KiB + 1280 * KiB)) <= 3 * 16 * KiB, `delta ${delta}`);
  });

  test('a smaller burst applies at once; debt stays owed', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket('identity_upload', limit(1 * MiB, 1 * MiB), clock);
    bucket.reconfigure(limit(1 * MiB, 4 * KiB));
    assert.equal(bucket.level(), 4 * KiB);
  });
});

describe('TokenBucket: off', () => {
  test('a rate of 0 never holds and never reads the clock per chunk', () => {
    let reads = 0;
    const clock = new FakeClock();
    const counting = Object.assign(Object.create(clock) as FakeClock, {
      now: () => {
        reads++;
        return clock.time;
      },
    });
    const bucket = new TokenBucket('identity_upload', limit(0, 0), counting);
    const { src, dir } = source(counting, [bucket], 64 * KiB);
    const readsAfterSetup = reads;
    for (let i = 0; i < 1000; i++) dir.onChunk(64 * KiB);
    assert.equal(reads, readsAfterSetup);
    assert.equal(src.holds, 0);
  });
});
