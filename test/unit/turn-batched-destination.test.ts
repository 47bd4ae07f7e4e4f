import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pino from 'pino';
import { flushLogger } from '../../src/observability/logger.js';
import { TurnBatchedDestination } from '../../src/observability/turn-batched-destination.js';

function recorder(): { out: { write(text: string): void }; writes: string[] } {
  const writes: string[] = [];
  return { out: { write: (text: string) => void writes.push(text) }, writes };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe('TurnBatchedDestination', () => {
  test('the lines of one turn go out in one write, in order, at the end of the turn', async () => {
    const { out, writes } = recorder();
    const dest = new TurnBatchedDestination(out);
    dest.write('a\n');
    dest.write('b\n');
    dest.write('c\n');
    assert.deepEqual(writes, [], 'nothing is written while the turn is running');
    await nextTurn();
    assert.deepEqual(writes, ['a\nb\nc\n']);
  });

  test('each turn gets its own write', async () => {
    const { out, writes } = recorder();
    const dest = new TurnBatchedDestination(out);
    dest.write('1\n');
    await nextTurn();
    dest.write('2\n');
    await nextTurn();
    assert.deepEqual(writes, ['1\n', '2\n']);
  });

  test('flushSync writes what is pending at once, and the scheduled flush then has nothing to add', async () => {
    const { out, writes } = recorder();
    const dest = new TurnBatchedDestination(out);
    dest.write('x\n');
    dest.flushSync();
    assert.deepEqual(writes, ['x\n']);
    await nextTurn();
    assert.deepEqual(writes, ['x\n']);
  });

  test('flushLogger on a pino logger over it writes the pending lines before it resolves', async () => {
    const { out, writes } = recorder();
    const logger = pino({ base: null, timestamp: false }, new TurnBatchedDestination(out));
    logger.info('tunnel closed');
    logger.child({ conn: 1 }).info('CONNECT allowed');
    await flushLogger(logger);
    const lines = writes.join('').trim().split('\n');
    assert.equal(lines.length, 2);
    assert.equal((JSON.parse(lines[1] ?? '{}') as { conn?: number }).conn, 1);
  });
});
