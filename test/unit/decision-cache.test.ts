import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { PolicyAllow } from '../../src/policy/decision.js';
import { DecisionCache } from '../../src/policy/decision-cache.js';

const spki = Buffer.from('client key');

/** An allow whose rows stay valid until `validUntilMono` on the cache's clock. */
function allowUntil(validUntilMono: number, permissionId = 'perm-1'): PolicyAllow {
  return {
    allowed: true,
    permissionId,
    signingKeyId: 'key-1',
    scopeId: '1',
    validUntilMono,
    endsWith: 'permission',
    cached: false,
  };
}

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
    const key = ttl.cache.keyOf('a', spki, 'h:1');
    ttl.cache.put(key, allowUntil(ttl.cache.clock() + 5000), ttl.cache.clock(), ttl.cache.generation);
    ttl.advance(99);
    assert.equal(ttl.cache.get(key)?.permissionId, 'perm-1');
    ttl.advance(1);
    assert.equal(ttl.cache.get(key), undefined);

    const rows = cacheAt(5000);
    const key2 = rows.cache.keyOf('a', spki, 'h:1');
    rows.cache.put(key2, allowUntil(rows.cache.clock() + 30), rows.cache.clock(), rows.cache.generation);
    rows.advance(30);
    assert.equal(rows.cache.get(key2), undefined);
  });

  test('the TTL counts from when the query was sent, not from when its answer arrived', () => {
    const { cache, advance } = cacheAt(100);
    const key = cache.keyOf('a', spki, 'h:1');
    const queriedAt = cache.clock();
    advance(60); // a slow answer: the revocation may have landed meanwhile
    cache.put(key, allowUntil(queriedAt + 5000), queriedAt, cache.generation);
    advance(39);
    assert.ok(cache.get(key));
    advance(1);
    assert.equal(cache.get(key), undefined, 'gone 100 ms after the query, not after the answer');
    const late = cache.clock();
    advance(100);
    cache.put(cache.keyOf('b', spki, 'h:1'), allowUntil(late + 5000), late, cache.generation);
    assert.equal(cache.size, 0, 'an answer slower than the TTL is not cached at all');
  });

  test('an answer to a query sent before an invalidation is not stored', () => {
    const { cache } = cacheAt(1000);
    const key = cache.keyOf('a', spki, 'h:1');
    const generation = cache.generation;
    const queriedAt = cache.clock();
    // The registry announced a change while the query was on its way.
    cache.clear();
    cache.put(key, allowUntil(queriedAt + 5000), queriedAt, generation);
    assert.equal(cache.get(key), undefined);
  });

  test('forget() drops an entry (a fresh deny for the same key)', () => {
    const { cache } = cacheAt(1000);
    const key = cache.keyOf('a', spki, 'h:1');
    cache.put(key, allowUntil(cache.clock() + 1000), cache.clock(), cache.generation);
    cache.forget(key);
    assert.equal(cache.get(key), undefined);
  });

  test('forgetPermissions() drops exactly the entries those permissions back', () => {
    const { cache } = cacheAt(1000);
    const a = cache.keyOf('a', spki, 'h:1');
    const b = cache.keyOf('b', spki, 'h:1');
    cache.put(a, allowUntil(cache.clock() + 1000, 'perm-a'), cache.clock(), cache.generation);
    cache.put(b, allowUntil(cache.clock() + 1000, 'perm-b'), cache.clock(), cache.generation);
    cache.forgetPermissions(new Set(['perm-a']));
    assert.equal(cache.get(a), undefined);
    assert.equal(cache.get(b)?.permissionId, 'perm-b');
  });

  test('rows already expired, or a validity that is not a number, are not cached', () => {
    const { cache } = cacheAt(1000);
    const now = cache.clock();
    cache.put(cache.keyOf('a', spki, 'h:1'), allowUntil(now), now, cache.generation);
    cache.put(cache.keyOf('b', spki, 'h:1'), allowUntil(now - 5), now, cache.generation);
    cache.put(cache.keyOf('c', spki, 'h:1'), allowUntil(Number.NaN), now, cache.generation);
    assert.equal(cache.size, 0);
  });

  test('the key is the exact identity, key bytes and destination', () => {
    const { cache } = cacheAt(1000);
    cache.put(
      cache.keyOf('a', spki, 'h:1'),
      allowUntil(cache.clock() + 1000),
      cache.clock(),
      cache.generation,
    );
    assert.equal(cache.get(cache.keyOf('a', Buffer.from('client kez'), 'h:1')), undefined);
    assert.equal(cache.get(cache.keyOf('A', spki, 'h:1')), undefined);
    assert.equal(cache.get(cache.keyOf('a', spki, 'h:2')), undefined);
    assert.ok(cache.get(cache.keyOf('a', spki, 'h:1')));
  });

  test('is bounded: the oldest entry goes first', () => {
    const { cache } = cacheAt(1000, 2);
    for (const id of ['a', 'b', 'c']) {
      cache.put(
        cache.keyOf(id, spki, 'h:1'),
        allowUntil(cache.clock() + 1000),
        cache.clock(),
        cache.generation,
      );
    }
    assert.equal(cache.size, 2);
    assert.equal(cache.get(cache.keyOf('a', spki, 'h:1')), undefined);
    assert.ok(cache.get(cache.keyOf('c', spki, 'h:1')));
  });
});
