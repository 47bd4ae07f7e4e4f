import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LeaseAccount } from '../../src/budget/lease-account.js';
import type { BucketSpec } from '../../src/config/rate-limit.js';
import { WindowCounter } from '../../src/exfil/window-counter.js';
import type { Bucket } from '../../src/ratelimit/bucket.js';
import { ThrottledDirection, type ThrottleListener } from '../../src/ratelimit/direction.js';
import { leaseSize } from '../../src/ratelimit/lease-size.js';
import {
  IDLE_RETURN_MS,
  type LeaseAnswer,
  LeasedBucket,
  type LeaseSource,
} from '../../src/ratelimit/leased-bucket.js';
import { FakeClock, FakeSource, KiB, MiB } from './ratelimit-fakes.js';

const quiet: ThrottleListener = { onHeld: () => {}, onReleased: () => {} };

/**
 * The shared bucket as the store keeps it, on the fake clock: tokens refill at the rate up to the burst,
 * a grant is at least `min` or nothing, answers take `latencyMs`, and `down` makes every call fail
 * (nothing granted). It is the test's model of the store, not the store: the SQL is tested on its own.
 */
class FakeSharedBucket {
  tokens: number;
  last = 0;
  calls = 0;
  granted = 0;
  returned = 0;
  down = false;

  constructor(
    private readonly clock: FakeClock,
    readonly rate: number,
    readonly burst: number,
    private readonly latencyMs = 0.5,
  ) {
    this.tokens = burst;
  }

  source(): LeaseSource & { outstanding: number } {
    const shared = this;
    return {
      outstanding: 0,
      lease(want: number, min: number): Promise<LeaseAnswer> {
        shared.calls++;
        return new Promise((resolve) => {
          shared.clock.defer(() => {
            if (shared.down) {
              resolve({ granted: 0, retryMs: 1000 });
              return;
            }
            shared.refill();
            const can = Math.floor(Math.min(want, shared.tokens));
            const granted = can >= min ? can : 0;
            shared.tokens -= granted;
            shared.granted += granted;
            this.outstanding += granted;
            resolve({ granted, retryMs: Math.ceil(((min - shared.tokens) / shared.rate) * 1000) });
          }, shared.latencyMs);
        });
      },
      giveBack(bytes: number): void {
        if (shared.down) return;
        shared.refill();
        shared.tokens = Math.min(shared.burst, shared.tokens + bytes);
        shared.returned += bytes;
        this.outstanding -= bytes;
      },
    };
  }

  private refill(): void {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }
}

/**
 * Advances the fake clock in steps, letting promise callbacks (the lease answers) run between steps,
 * as the event loop would.
 */
async function advance(clock: FakeClock, ms: number, step = 1, each?: () => void): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await new Promise((resolve) => setImmediate(resolve));
    each?.();
  }
}

function spec(rate: number, burst: number): BucketSpec {
  return { bytesPerSecond: rate, burstBytes: burst };
}

function gatewayOf(
  clock: FakeClock,
  shared: FakeSharedBucket,
  tunnels: number,
  log: WindowCounter,
  chunk = 16 * KiB,
  limitBytes = Number.POSITIVE_INFINITY,
) {
  const source = shared.source();
  const bucket = new LeasedBucket('identity_upload', spec(shared.rate, shared.burst), source, clock);
  const sources = Array.from({ length: tunnels }, () => {
    const src = new FakeSource(clock, chunk, { gapMs: 0.01, resumeMs: 0.02, limitBytes });
    const dir = new ThrottledDirection('client_to_dest', src, [bucket as Bucket], clock, quiet);
    src.gate = (n) => dir.admit(n);
    src.onForward = (bytes, time) => log.record(time, bytes);
    return src;
  });
  return { bucket, source, sources };
}

describe('LeasedBucket: the bound across gateways', () => {
  for (const [gateways, tunnels] of [
    [1, 1],
    [2, 16],
    [4, 64],
  ] as const) {
    test(`${gateways} gateway(s), ${tunnels} tunnels each: bytes <= rate x W + burst + G x L for every W`, async () => {
      const clock = new FakeClock({ wholeMs: true });
      const rate = 1 * MiB;
      const burst = 256 * KiB;
      const shared = new FakeSharedBucket(clock, rate, burst);
      const log = new WindowCounter();
      const gws = Array.from({ length: gateways }, () => gatewayOf(clock, shared, tunnels, log));
      for (const g of gws) for (const s of g.sources) s.start();
      let mostHeld = 0;
      await advance(clock, 30_000, 1, () => {
        for (const g of gws) mostHeld = Math.max(mostHeld, g.bucket.balance);
      });
      const lease = leaseSize(spec(rate, burst));
      assert.equal(lease, Math.ceil(rate / 10), 'about 100 ms of the rate');
      assert.ok(mostHeld <= lease, `a gateway held ${mostHeld} bytes, more than one lease (${lease})`);
      for (const w of [0, 10, 100, 1000, 10_000, 30_000]) {
        const most = log.maxIn(w);
        const allowed = (rate * w) / 1000 + burst + gateways * lease;
        assert.ok(most <= allowed, `${most} bytes in ${w} ms, allowed ${allowed}`);
      }
      // The identity still gets its rate across the gateways (less what the last leases hold).
      assert.ok(log.total >= rate * 30 - gateways * lease, `total ${log.total}`);
      // Grants are at least a quarter lease, so calls stay near rate / (L / 4) per second, plus the asks
      // that find the shared bucket emptied by another gateway: they grow with gateways, not with tunnels.
      const perSecond = shared.calls / 30;
      assert.ok(perSecond <= gateways * (rate / (lease / 4)) + 10, `${perSecond} lease calls per second`);
    });
  }

  test('a chunk is never larger than a lease: pieces of at most L, paid before they go', async () => {
    const clock = new FakeClock({ wholeMs: true });
    const shared = new FakeSharedBucket(clock, 64 * KiB, 64 * KiB);
    const log = new WindowCounter();
    const g = gatewayOf(clock, shared, 1, log, 256 * KiB);
    for (const s of g.sources) s.start();
    await advance(clock, 10_000);
    assert.ok(log.maxIn(0) <= leaseSize(spec(64 * KiB, 64 * KiB)));
    assert.ok(shared.granted - shared.returned >= g.sources[0]!.delivered);
  });
});

describe('LeasedBucket: unused bytes go back', () => {
  test('an idle gateway hands its balance back after IDLE_RETURN_MS, so another can use it', async () => {
    const clock = new FakeClock({ wholeMs: true });
    const shared = new FakeSharedBucket(clock, 1 * MiB, 1 * MiB);
    const log = new WindowCounter();
    // 150 KiB against leases of 102.4 KiB: the second lease is half unused when the tunnel goes quiet.
    const g = gatewayOf(clock, shared, 1, log, 16 * KiB, 150 * KiB);
    g.sources[0]!.start();
    await advance(clock, 50);
    assert.equal(log.total, 150 * KiB);
    assert.ok(g.bucket.balance > 0, 'holds the rest of its lease');
    await advance(clock, IDLE_RETURN_MS + 10);
    assert.equal(g.bucket.balance, 0);
    // What stays charged to the shared bucket is exactly what was sent.
    assert.equal(g.source.outstanding, log.total);
    assert.ok(shared.returned > 0);
  });

  test('closing the bucket (its identity has no tunnels left) hands everything back at once', async () => {
    const clock = new FakeClock({ wholeMs: true });
    const shared = new FakeSharedBucket(clock, 1 * MiB, 1 * MiB);
    const log = new WindowCounter();
    const g = gatewayOf(clock, shared, 1, log, 16 * KiB, 150 * KiB);
    g.sources[0]!.start();
    await advance(clock, 20);
    assert.ok(g.bucket.balance > 0);
    g.bucket.close();
    assert.equal(g.bucket.balance, 0);
    assert.equal(g.source.outstanding, log.total);
    // A grant that arrives after the close goes back too.
    await advance(clock, 10);
    assert.equal(g.source.outstanding, log.total);
  });
});

describe('LeasedBucket: the store goes away and comes back', () => {
  test('spends what it holds, is then held (nothing passes), and resumes by itself', async () => {
    const clock = new FakeClock({ wholeMs: true });
    const shared = new FakeSharedBucket(clock, 1 * MiB, 256 * KiB);
    const log = new WindowCounter();
    const g = gatewayOf(clock, shared, 4, log);
    for (const s of g.sources) s.start();
    await advance(clock, 2000);
    shared.down = true;
    const atOutage = log.total;
    const held = g.bucket.balance;
    await advance(clock, 10_000);
    // At most what it held when the store went away (the one lease in flight was answered "nothing").
    assert.ok(log.total - atOutage <= held + 1, `${log.total - atOutage} bytes while the store was away`);
    assert.ok(
      g.sources.every((s) => s.holds === 1),
      'every tunnel is held',
    );
    shared.down = false;
    const atRecovery = log.total;
    await advance(clock, 5000);
    assert.ok(
      log.total - atRecovery >= 4 * MiB,
      `only ${log.total - atRecovery} bytes after the store came back`,
    );
  });

  test('a bucket without a rate or quota never asks the store', async () => {
    const clock = new FakeClock();
    const shared = new FakeSharedBucket(clock, 1, 1);
    const bucket = new LeasedBucket('identity_upload', spec(0, 1 * MiB), shared.source(), clock);
    assert.equal(bucket.limited, false);
    const src = new FakeSource(clock, 64 * KiB, { limitBytes: 10 * MiB });
    const dir = new ThrottledDirection('client_to_dest', src, [bucket], clock, quiet);
    src.gate = (n) => dir.admit(n);
    src.start();
    await advance(clock, 100);
    assert.equal(src.delivered, 10 * MiB);
    assert.equal(shared.calls, 0);
  });
});

describe('lease size', () => {
  test('about 100 ms of the rate, at least 64 KiB, at most 16 MiB, never above the burst; 1 MiB for a quota alone', () => {
    assert.equal(leaseSize(spec(1 * MiB, 1 * MiB)), Math.ceil(MiB / 10));
    assert.equal(leaseSize(spec(64 * KiB, 1 * MiB)), 64 * KiB);
    assert.equal(leaseSize(spec(1024 * MiB, 1024 * MiB)), 16 * MiB);
    assert.equal(leaseSize(spec(1 * MiB, 32 * KiB)), 32 * KiB);
    assert.equal(leaseSize({ bytesPerSecond: 0, burstBytes: 0, quota: { bytes: 10, windowS: 60 } }), 1 * MiB);
  });
});

describe('LeaseAccount: which lease held bytes came from', () => {
  test('hands back from the newest lease; spent leases are forgotten', () => {
    const account = new LeaseAccount(60_000);
    account.granted('1', 100, 100, 0);
    account.granted('2', 100, 150, 1); // 50 of lease 1 were spent before lease 2 came
    assert.deepEqual(account.takeBack(120, 150, 2), [
      { leaseId: '2', bytes: 100 },
      { leaseId: '1', bytes: 20 },
    ]);
    // 30 of lease 1 are still held; then they are spent too.
    account.granted('3', 100, 130, 3);
    assert.deepEqual(account.takeBack(130, 130, 4), [
      { leaseId: '3', bytes: 100 },
      { leaseId: '1', bytes: 30 },
    ]);
    assert.equal(account.size, 0);
  });

  test('a lease older than the store keeps it is forgotten: it counts as spent', () => {
    const account = new LeaseAccount(60_000);
    account.granted('1', 100, 100, 0);
    assert.deepEqual(account.takeBack(100, 100, 60_000), []);
  });
});
