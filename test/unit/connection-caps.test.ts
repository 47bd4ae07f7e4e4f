import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConnectionCounter } from '../../src/proxy/connection-caps.js';

describe('connection caps: concurrent connections in total and per source address', () => {
  test('one source gets max_connections_per_source places; the next is refused with its counts', () => {
    const counter = new ConnectionCounter({ maxConnections: 10, maxPerSource: 2 });
    assert.equal(counter.admit('10.0.0.1'), undefined);
    assert.equal(counter.admit('10.0.0.1'), undefined);
    assert.deepEqual(counter.admit('10.0.0.1'), {
      reason: 'max_connections_per_source',
      detail: '2 connections open from this address, server.max_connections_per_source = 2',
    });
    assert.equal(counter.admit('10.0.0.2'), undefined, 'another source still gets in');
    assert.equal(counter.open, 3, 'a refused connection takes no place');
  });

  test('beyond max_connections every source is refused, also one that has none open', () => {
    const counter = new ConnectionCounter({ maxConnections: 3, maxPerSource: 2 });
    for (const source of ['a', 'a', 'b']) assert.equal(counter.admit(source), undefined);
    assert.deepEqual(counter.admit('c'), {
      reason: 'max_connections',
      detail: '3 connections open, server.max_connections = 3',
    });
    // Both caps bite for 'a': the total is named.
    assert.equal(counter.admit('a')?.reason, 'max_connections');
  });

  test('a released place can be taken again, per source and in total', () => {
    const counter = new ConnectionCounter({ maxConnections: 2, maxPerSource: 1 });
    assert.equal(counter.admit('a'), undefined);
    assert.equal(counter.admit('b'), undefined);
    assert.equal(counter.admit('c')?.reason, 'max_connections');
    counter.release('a');
    assert.equal(counter.open, 1);
    assert.equal(counter.admit('c'), undefined);
    assert.equal(counter.admit('b')?.reason, 'max_connections');
    counter.release('b');
    assert.equal(counter.admit('b'), undefined, 'its per-source count went back to 0');
  });

  test('releasing a source that holds nothing changes nothing (a refused connection is never released)', () => {
    const counter = new ConnectionCounter({ maxConnections: 1, maxPerSource: 1 });
    assert.equal(counter.admit('a'), undefined);
    counter.release('never-admitted');
    assert.equal(counter.open, 1);
    assert.equal(counter.admit('b')?.reason, 'max_connections');
  });

  test('many sources coming and going leave nothing behind', () => {
    const counter = new ConnectionCounter({ maxConnections: 5, maxPerSource: 5 });
    for (let i = 0; i < 10_000; i++) {
      assert.equal(counter.admit(`10.0.${i >> 8}.${i & 255}`), undefined);
      counter.release(`10.0.${i >> 8}.${i & 255}`);
    }
    assert.equal(counter.open, 0);
    for (let i = 0; i < 5; i++) assert.equal(counter.admit('x'), undefined);
  });
});
