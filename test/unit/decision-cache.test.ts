import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DecisionCache } from '../../src/policy/decision-cache.js';

const spki = Buffer.from('client key');
const allow = { permissionId: 'perm-1', signingKeyId: 'key-1' };

function cacheAt(maxAgeMs: number, maxEntries = 8): { cache: DecisionCache; advance: (ms: number) => void } {
  let now = 1000;
  const advance = (ms: number): void => {
    now += ms;
  };
  return { cache: new DecisionCache(maxAgeMs, maxEntries, () => now), advance };
}

describe('DecisionCache', () => {
  test("an entry lives for the shorter of the TTL and the rows' validity", () => {
    const ttl = cacheAt(100);
    ttl.cache.put(ttl.cache.keyOf('a', spki, 'h:1'), allow, 5000, ttl.cache.clock());
    ttl.advance(99);
    assert.deepEqual(ttl.cache.get(ttl.cache.keyOf('a', spki, 'h:1'))?.permissionId, 'perm-1');
    ttl.advance(1);
    assert.equal(ttl.cache.get(ttl.cache.keyOf('a', spki, 'h:1')), undefined);

    const rows = cacheAt(5000);
    rows.cache.put(rows.cache.keyOf('a', spki, 'h:1'), allow, 30, rows.cache.clock());
    rows.advance(30);
    assert.equal(rows.cache.get(rows.cache.keyOf('a', spki, 'h:1')), undefined);
  });

  test('both bounds count from when the query was sent, not from when its answer arrived', () => {
    const { cache, advance } = cacheAt(100);
    const queriedAt = cache.clock();
    advance(60); // a slow answer: the revocation may have landed meanwhile
    cache.put(cache.keyOf('a', spki, 'h:1'), allow, 5000, queriedAt);
    advance(39);
    assert.ok(cache.get(cache.keyOf('a', spki, 'h:1')));
    advance(1);
    assert.equal(
      cache.get(cache.keyOf('a', spki, 'h:1')),
      undefined,
      'gone 100 ms after the query, not after the answer',
    );
    const late = cache.clock();
    advance(100);
    cache.put(cache.keyOf('b', spki, 'h:1'), allow, 5000, late);
    assert.equal(cache.size, 0, 'an answer slower than the TTL is not cached at all');
  });

  test('forget() drops an entry (a fresh deny for the same key)', () => {
    const { cache } = cacheAt(1000);
    cache.put(cache.keyOf('a', spki, 'h:1'), allow, 1000, cache.clock());
    cache.forget(cache.keyOf('a', spki, 'h:1'));
    assert.equal(cache.get(cache.keyOf('a', spki, 'h:1')), undefined);
  });

  test('rows already expired, or a validity that is not a number, are not cached', () => {
    const { cache } = cacheAt(1000);
    cache.put(cache.keyOf('a', spki, 'h:1'), allow, 0, cache.clock());
    cache.put(cache.keyOf('b', spki, 'h:1'), allow, -5, cache.clock());
    cache.put(cache.keyOf('c', spki, 'h:1'), allow, Number.NaN, cache.clock());
    assert.equal(cache.size, 0);
  });

  test('the key is the exact identity, key bytes and destination', () => {
    const { cache } = cacheAt(1000);
    cache.put(cache.keyOf('a', spki, 'h:1'), allow, 1000, cache.clock());
    assert.equal(cache.get(cache.keyOf('a', Buffer.from('client kez'), 'h:1')), undefined);
    assert.equal(cache.get(cache.keyOf('A', spki, 'h:1')), undefined);
    assert.equal(cache.get(cache.keyOf('a', spki, 'h:2')), undefined);
    assert.ok(cache.get(cache.keyOf('a', spki, 'h:1')));
  });

  test('is bounded: the oldest entry goes first', () => {
    const { cache } = cacheAt(1000, 2);
    for (const id of ['a', 'b', 'c']) cache.put(cache.keyOf(id, spki, 'h:1'), allow, 1000, cache.clock());
    assert.equal(cache.size, 2);
    assert.equal(cache.get(cache.keyOf('a', spki, 'h:1')), undefined);
    assert.ok(cache.get(cache.keyOf('c', spki, 'h:1')));
  });
});
