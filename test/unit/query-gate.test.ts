import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueryGate } from '../../src/registry/query-gate.js';
import { FakeClock } from './ratelimit-fakes.js';

/**
 * A stand-in for a postgres.js PendingQuery: a promise with the two internals the gate reads (`state`,
 * set once the query is written to a connection, and `canceller`).
 */
class FakeQuery<T> extends Promise<T> {
  state: unknown = null;
  canceller: ((q: unknown) => Promise<void>) | null = null;
  cancelled = 0;
  settle!: { resolve(v: T): void; reject(e: unknown): void };

  static make<T>(): FakeQuery<T> {
    let settle!: FakeQuery<T>['settle'];
    const q = new FakeQuery<T>((resolve, reject) => {
      settle = { resolve, reject };
    });
    q.settle = settle;
    q.canceller = async () => {
      q.cancelled++;
    };
    return q;
  }

  static override get [Symbol.species]() {
    return Promise;
  }
}

const tick = () => new Promise((r) => setImmediate(r));

describe('QueryGate', () => {
  it('passes results through and frees its slot', async () => {
    const gate = new QueryGate(1, undefined, new FakeClock());
    const q = FakeQuery.make<number>();
    const pending = gate.run(() => q, 1000);
    assert.equal(gate.busy, 1);
    q.settle.resolve(42);
    assert.deepEqual(await pending, { ok: true, value: 42 });
    assert.equal(gate.busy, 0);
  });

  it('never cancels a query that was not sent yet; its slot stays taken until it settles', async () => {
    const clock = new FakeClock();
    const gate = new QueryGate(1, undefined, clock);
    const unsent = FakeQuery.make<number>();
    const first = gate.run(() => unsent, 100);
    clock.advance(100);
    const result = await first;
    assert.equal(result.ok, false);
    assert.equal(result.ok === false && result.kind, 'timeout');
    assert.equal(unsent.cancelled, 0, 'an unsent query strands its connection when cancelled');
    assert.equal(gate.busy, 1, 'the query still holds its slot');
    // The next caller waits for the slot; once the abandoned query settles, it runs.
    const next = FakeQuery.make<number>();
    let started = false;
    const second = gate.run(() => {
      started = true;
      return next;
    }, 1000);
    await tick();
    assert.equal(started, false);
    unsent.settle.resolve(1);
    await tick();
    assert.equal(started, true);
    next.settle.resolve(2);
    assert.deepEqual(await second, { ok: true, value: 2 });
  });

  it('cancels a query on the wire when its deadline passes', async () => {
    const clock = new FakeClock();
    const gate = new QueryGate(1, undefined, clock);
    const sent = FakeQuery.make<number>();
    sent.state = { pid: 1 };
    const pending = gate.run(() => sent, 50);
    clock.advance(50);
    const result = await pending;
    assert.equal(result.ok === false && result.kind, 'timeout');
    assert.equal(sent.cancelled, 1);
  });

  it('bounds queries in flight; a waiter whose deadline passes leaves the queue and never runs', async () => {
    const clock = new FakeClock();
    const gate = new QueryGate(2, undefined, clock);
    const running = [FakeQuery.make<number>(), FakeQuery.make<number>()];
    const a = gate.run(() => running[0]!, 1000);
    const b = gate.run(() => running[1]!, 1000);
    let lateStarted = false;
    const late = gate.run(() => {
      lateStarted = true;
      return FakeQuery.make<number>();
    }, 10);
    assert.equal(gate.busy, 2);
    clock.advance(10);
    const lateResult = await late;
    assert.equal(lateResult.ok === false && lateResult.kind, 'timeout');
    running[0]!.settle.resolve(1);
    running[1]!.settle.resolve(2);
    await Promise.all([a, b]);
    await tick();
    assert.equal(lateStarted, false, 'a caller that gave up must not run its query later');
    assert.equal(gate.busy, 0);
  });

  it('reports errors as errors and statement timeouts as timeouts, and tells its observer', async () => {
    const seen: boolean[] = [];
    const gate = new QueryGate(1, { settled: (ok) => seen.push(ok) }, new FakeClock());
    const broken = FakeQuery.make<number>();
    const slow = FakeQuery.make<number>();
    const r1 = gate.run(() => broken, 1000);
    broken.settle.reject(Object.assign(new Error('relation does not exist'), { code: '42P01' }));
    const e1 = await r1;
    assert.equal(e1.ok === false && e1.kind, 'error');
    const r2 = gate.run(() => slow, 1000);
    slow.settle.reject(
      Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' }),
    );
    const e2 = await r2;
    assert.equal(e2.ok === false && e2.kind, 'timeout');
    assert.deepEqual(seen, [false, false]);
  });

  it('a start() that throws is an error, not a crash, and frees the slot', async () => {
    const gate = new QueryGate(1, undefined, new FakeClock());
    const r = await gate.run(() => {
      throw new Error('boom');
    }, 1000);
    assert.equal(r.ok === false && r.kind, 'error');
    assert.equal(gate.busy, 0);
  });
});
