import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BucketLimit } from '../../src/config/rate-limit.js';
import { WindowCounter } from '../../src/exfil/window-counter.js';
import { type Bucket, TokenBucket } from '../../src/ratelimit/bucket.js';
import { ThrottledDirection, type ThrottleListener } from '../../src/ratelimit/direction.js';
import { FakeClock, FakeSource, KiB, MiB } from './ratelimit-fakes.js';

const quiet: ThrottleListener = { onHeld: () => {}, onReleased: () => {} };

function limit(bytesPerSecond: number, burstBytes: number): BucketLimit {
  return { bytesPerSecond, burstBytes };
}

/** A source of `chunk`-byte reads whose every chunk passes through `buckets` before it is forwarded. */
function source(
  clock: FakeClock,
  buckets: readonly [Bucket] | readonly [Bucket, Bucket],
  chunk: number,
  opts: ConstructorParameters<typeof FakeSource>[2] = {},
  log?: WindowCounter,
): { src: FakeSource; dir: ThrottledDirection } {
  const src = new FakeSource(clock, chunk, opts);
  const dir = new ThrottledDirection('client_to_dest', src, buckets, clock, quiet);
  src.gate = (n) => dir.admit(n);
  if (log !== undefined) src.onForward = (bytes, time) => log.record(time, bytes);
  return { src, dir };
}

/** The bound every window W must meet: rate × W + burst (W in ms). */
function assertBound(log: WindowCounter, rate: number, burst: number, windowsMs: readonly number[]): void {
  for (const w of windowsMs) {
    const most = log.maxIn(w);
    const allowed = (rate * w) / 1000 + burst;
    // 1e-3 byte: float rounding in elapsed × rate, far below one byte.
    assert.ok(most <= allowed + 1e-3, `${most} bytes in a ${w} ms window, allowed ${allowed}`);
  }
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
      const resumeMs = 0.02;
      const { src } = source(clock, [bucket], chunk, { resumeMs });
      src.start();
      const seconds = rate < 10 * KiB ? 200 : 10;
      clock.advance(seconds * 1000);
      const allowed = burst + rate * seconds;
      // Paid before forwarding: never a byte over, not even the chunk that crosses the line.
      assert.ok(src.delivered <= allowed, `${src.delivered} > ${allowed}`);
      // What is lost: a chunk in flight at the end, and, when the burst is smaller than what accrues
      // while the source reads its next chunk, the excess (the cap is the burst, exactly).
      const lostPerChunk = Math.max(0, (rate * resumeMs) / 1000 - burst);
      const floor = allowed - chunk - src.chunks * lostPerChunk;
      assert.ok(src.delivered >= floor, `${src.delivered} < ${floor}`);
    });
  }

  test('late timers (whole milliseconds, +2 ms) cost no rate when the burst covers the lateness', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 2 });
    const rate = 100 * MiB;
    // A timer rounded up to 1 ms and then 2 ms late at 100 MiB/s is 300 KiB: a 1 MiB burst keeps what
    // accrued meanwhile.
    const burst = 1 * MiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, burst), clock);
    const { src } = source(clock, [bucket], 16 * KiB, { resumeMs: 0.05 });
    src.start();
    clock.advance(5000);
    const allowed = burst + rate * 5;
    // At the end the source may be waiting for a timer that is due (plus late): that much is not yet
    // delivered, but it is not lost either.
    const pending = rate * 0.004;
    assert.ok(src.delivered <= allowed, `delivered ${src.delivered}, allowed ${allowed}`);
    assert.ok(
      src.delivered >= allowed - 16 * KiB - pending,
      `delivered ${src.delivered}, allowed ${allowed}`,
    );
  });

  test('a burst below what one late timer accrues trades rate for the bound, never the bound for rate', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 2 });
    const rate = 100 * MiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, 1 * KiB), clock);
    const log = new WindowCounter();
    const { src } = source(clock, [bucket], 16 * KiB, { resumeMs: 0.05 }, log);
    src.start();
    clock.advance(2000);
    assertBound(log, rate, 1 * KiB, [0, 0.5, 1, 3, 10, 100, 1000]);
    // Each wake-up passes at most the burst: about one KiB per (whole, late) millisecond timer.
    assert.ok(src.delivered <= 1 * KiB + 2000 * 1 * KiB, `delivered ${src.delivered}`);
  });

  test('one timer serves all waiters and the tokens never go negative', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(1 * MiB, 8 * KiB), clock);
    const log = new WindowCounter();
    const sources = Array.from({ length: 8 }, () => source(clock, [bucket], 32 * KiB, {}, log).src);
    for (const s of sources) s.start();
    let lowest = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 2000; i++) {
      clock.advance(1);
      lowest = Math.min(lowest, bucket.level());
      assert.ok(clock.active() <= 1, 'more than one timer armed for one bucket');
    }
    assert.ok(lowest >= 0, `tokens went to ${lowest}`);
    // At most one wake-up per piece forwarded (a piece is at most 6 KiB here: the 8 KiB burst less 2 ms
    // of rate), not one per waiter: eight waiting sources do not multiply the timers.
    assert.ok(clock.timersArmed <= log.arrivals, `${clock.timersArmed} timers for ${log.arrivals} pieces`);
  });
});

describe('TokenBucket: the short-window bound (bytes ≤ rate × W + burst for every W)', () => {
  // The HTTP/2 sawtooth: many streams of one identity, each with a window's worth buffered, released
  // together. A bucket that lets each released stream run into debt passes far more than rate × W +
  // burst over short windows, then repays it; a bucket paid before forwarding cannot.
  for (const streams of [1, 16, 64, 256]) {
    test(`${streams} streams with data always ready, 1 MiB/s, 64 KiB burst`, () => {
      const clock = new FakeClock({ wholeMs: true });
      const rate = 1 * MiB;
      const burst = 64 * KiB;
      const bucket = new TokenBucket('identity_upload', limit(rate, burst), clock);
      const log = new WindowCounter();
      const sources = Array.from(
        { length: streams },
        () => source(clock, [bucket], 16 * KiB, { gapMs: 0, resumeMs: 0 }, log).src,
      );
      for (const s of sources) s.start();
      clock.advance(30_000);
      assertBound(log, rate, burst, [0, 1, 10, 100, 1000, 10_000, 30_000]);
      // And the rate is reached: over 30 s the identity sends its budget less a chunk.
      assert.ok(log.total >= burst + rate * 30 - 16 * KiB, `total ${log.total}`);
    });
  }

  test('tunnels opened and closed in a loop get nothing beyond the bound', () => {
    const clock = new FakeClock({ wholeMs: true });
    const rate = 1 * MiB;
    const burst = 64 * KiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, burst), clock);
    const log = new WindowCounter();
    let open: Array<ReturnType<typeof source>> = [];
    for (let round = 0; round < 2000; round++) {
      // Every 5 ms: close the tunnels of the last round (queued or not) and open eight new ones.
      for (const t of open) {
        t.src.stop();
        t.dir.close();
      }
      open = Array.from({ length: 8 }, () => source(clock, [bucket], 16 * KiB, { gapMs: 0 }, log));
      for (const t of open) t.src.start();
      clock.advance(5);
    }
    assertBound(log, rate, burst, [0, 1, 10, 100, 1000, 10_000]);
  });
});

describe('TokenBucket: sharing', () => {
  test('tunnels sharing a bucket get equal shares and the sum holds the rate', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 1 });
    const rate = 1 * MiB;
    const bucket = new TokenBucket('identity_upload', limit(rate, 64 * KiB), clock);
    // Staggered starts: turns are still taken chunk by chunk.
    const sources = [16 * KiB, 16 * KiB, 16 * KiB, 16 * KiB].map((c) => source(clock, [bucket], c).src);
    sources.forEach((s, i) => {
      clock.advance(i * 3);
      s.start();
    });
    clock.advance(1000);
    const warm = sources.map((s) => s.delivered);
    clock.advance(20_000);
    const total = sources.reduce((n, s) => n + s.delivered, 0);
    // 18 ms of staggered starts, then 21 s.
    assert.ok(total <= 64 * KiB + rate * 21.018, `total ${total}`);
    assert.ok(total >= 64 * KiB + rate * 21.018 - 4 * 16 * KiB, `total ${total}`);
    // The first tunnel had the burst to itself; from then on turns are equal.
    const shares = sources.map((s, i) => s.delivered - warm[i]!);
    const spread = Math.max(...shares) - Math.min(...shares);
    assert.ok(spread <= 2 * 16 * KiB, `shares ${shares.join(', ')}`);
  });

  test('a tunnel with small reads gets as many bytes as one with large reads', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(256 * KiB, 64 * KiB), clock);
    const big = source(clock, [bucket], 64 * KiB).src;
    const small = source(clock, [bucket], 1 * KiB).src;
    big.start();
    small.start();
    // After the first second (the burst went to whoever read first), turns are fair in bytes (deficit
    // round robin), not in reads: 1 KiB reads get as many bytes; the gap is at most the turn in progress.
    clock.advance(1000);
    const [smallBefore, bigBefore] = [small.delivered, big.delivered];
    clock.advance(9000);
    const [smallGot, bigGot] = [small.delivered - smallBefore, big.delivered - bigBefore];
    assert.ok(Math.abs(smallGot - bigGot) <= 64 * KiB + 16 * KiB, `small ${smallGot} bytes, big ${bigGot}`);
    assert.ok(small.chunks > 10 * big.chunks);
  });

  test('an identity bucket and the total bucket both hold a chunk', () => {
    const clock = new FakeClock({ wholeMs: true });
    const total = new TokenBucket('total_upload', limit(1 * MiB, 64 * KiB), clock);
    const a = new TokenBucket('identity_upload', limit(1 * MiB, 64 * KiB), clock);
    const b = new TokenBucket('identity_upload', limit(1 * MiB, 64 * KiB), clock);
    const log = new WindowCounter();
    const sa = source(clock, [a, total], 16 * KiB, {}, log).src;
    const sb = source(clock, [b, total], 16 * KiB, {}, log).src;
    sa.start();
    sb.start();
    clock.advance(10_000);
    const sum = sa.delivered + sb.delivered;
    // Each identity could do 1 MiB/s alone; together they get the total's 1 MiB/s.
    assert.ok(sum <= 64 * KiB + 10 * MiB, `sum ${sum}`);
    assert.ok(sum >= 64 * KiB + 10 * MiB - 4 * 16 * KiB, `sum ${sum}`);
    assert.ok(Math.abs(sa.delivered - sb.delivered) <= 2 * 16 * KiB, `${sa.delivered} vs ${sb.delivered}`);
    assertBound(log, 1 * MiB, 64 * KiB, [0, 10, 1000]);
  });

  test('a tunnel that closes while paid in its identity bucket and waiting for the total gives the tokens back', () => {
    const clock = new FakeClock({ wholeMs: true });
    const total = new TokenBucket('total_upload', limit(16 * KiB, 16 * KiB), clock);
    const a = new TokenBucket('identity_upload', limit(1 * MiB, 64 * KiB), clock);
    const hog = source(clock, [a, total], 16 * KiB);
    hog.src.start();
    clock.advance(1);
    // The total's burst went to the first chunk; the second is paid in `a` and waits for the total.
    assert.equal(hog.src.delivered, 16 * KiB);
    assert.equal(total.waiters, 1);
    assert.ok(a.level() < 64 * KiB - 16 * KiB);
    hog.src.stop();
    hog.dir.close();
    assert.equal(total.waiters, 0);
    clock.advance(0);
    assert.equal(a.level() >= 64 * KiB - 16 * KiB, true);
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
    assert.ok(quietOne.delivered + busy.delivered <= allowed);
    assert.ok(quietOne.delivered + busy.delivered >= allowed - 2 * 16 * KiB);
  });

  test('a tunnel opened while others wait takes its turn before its first chunk goes', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 16 * KiB), clock);
    const first = source(clock, [bucket], 64 * KiB);
    first.src.start();
    clock.advance(10);
    assert.ok(first.src.holds > 0);
    // Fifteen more tunnels: none forwards a byte "for free" while the first waits.
    const late = Array.from({ length: 15 }, () => source(clock, [bucket], 64 * KiB));
    for (const t of late) t.src.start();
    clock.advance(10);
    assert.equal(
      late.reduce((n, t) => n + t.src.delivered, 0),
      0,
    );
    assert.equal(bucket.waiters, 16);
    // From then on 64 KiB per second, 16 KiB pieces in turn: after 16 s each late one has had a chunk.
    clock.advance(16_000);
    assert.ok(
      late.every((t) => t.src.delivered >= 48 * KiB && t.src.delivered <= 80 * KiB),
      late.map((t) => t.src.delivered).join(','),
    );
  });

  test('tunnels opened together share the burst instead of each reading a chunk on top of it', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 32 * KiB), clock);
    const tunnels = Array.from({ length: 16 }, () => source(clock, [bucket], 64 * KiB));
    for (const t of tunnels) t.src.start();
    clock.advance(5);
    // The 32 KiB burst goes to the first tunnel's first piece; the other fifteen wait their turn.
    const sent = tunnels.reduce((n, t) => n + t.src.delivered, 0);
    assert.ok(sent <= 32 * KiB + 64 * KiB * 0.005, `${sent} bytes in 5 ms`);
    assert.equal(tunnels.filter((t) => t.src.delivered > 0).length, 1);
  });

  test('a tunnel that never sends does not hold the others up', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(64 * KiB, 16 * KiB), clock);
    const idle = source(clock, [bucket], 16 * KiB, { limitBytes: 0 });
    idle.src.start();
    const busy = source(clock, [bucket], 16 * KiB);
    busy.src.start();
    clock.advance(10_000);
    // Nothing is set aside for a tunnel until it has read: the busy one gets the whole rate.
    assert.ok(busy.src.delivered <= 16 * KiB + 640 * KiB, `${busy.src.delivered}`);
    assert.ok(busy.src.delivered >= 16 * KiB + 640 * KiB - 16 * KiB, `${busy.src.delivered}`);
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
    // 64 KiB of burst plus half a millisecond of refill; no chunk on top of it.
    assert.ok(src.delivered <= 64 * KiB + 1 * MiB * 0.0005 + 1, `${src.delivered}`);
  });

  test('a bucket that served a tunnel which went quiet refills to its burst, no further', () => {
    const clock = new FakeClock({ wholeMs: true, lateMs: 3 });
    const bucket = new TokenBucket('identity_upload', limit(10 * MiB, 1 * KiB), clock);
    const { src } = source(clock, [bucket], 64 * KiB, { limitBytes: 256 * KiB });
    src.start();
    // A 1 KiB burst passes about one piece per (late) timer: 256 KiB take a while, then it goes quiet.
    clock.advance(10_000);
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

  test('a smaller burst applies at once, also to a piece already waiting', () => {
    const clock = new FakeClock({ wholeMs: true });
    const bucket = new TokenBucket('identity_upload', limit(1 * MiB, 1 * MiB), clock);
    bucket.reconfigure(limit(1 * MiB, 4 * KiB));
    assert.equal(bucket.level(), 4 * KiB);
    const log = new WindowCounter();
    const { src } = source(clock, [bucket], 64 * KiB, {}, log);
    src.start();
    clock.advance(1000);
    assertBound(log, 1 * MiB, 4 * KiB, [0, 1, 10, 1000]);
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
    for (let i = 0; i < 1000; i++) assert.equal(dir.admit(64 * KiB), 64 * KiB);
    assert.equal(reads, readsAfterSetup);
    assert.equal(src.holds, 0);
  });
});
