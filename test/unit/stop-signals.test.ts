import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deferStopSignals } from '../../src/process/stop-signals.js';

// process.emit runs the listeners without sending a real signal to the test process.
const emit = (signal: NodeJS.Signals) =>
  (process.emit as (event: string, arg: string) => boolean)(signal, signal);

test('a stop signal before start-up finished is kept and handled once start-up is done', () => {
  const deferred = deferStopSignals();
  emit('SIGTERM');
  const seen: string[] = [];
  deferred.onStop((signal) => seen.push(signal));
  assert.deepEqual(seen, ['SIGTERM']);
  assert.equal(process.listenerCount('SIGTERM'), 0, 'the first signal removes the handlers');
});

test('a stop signal after start-up runs the handler once; cancel restores the default', () => {
  const deferred = deferStopSignals();
  const seen: string[] = [];
  deferred.onStop((signal) => seen.push(signal));
  emit('SIGINT');
  emit('SIGINT');
  assert.deepEqual(seen, ['SIGINT']);
  const other = deferStopSignals();
  other.cancel();
  assert.equal(process.listenerCount('SIGINT'), 0);
  assert.equal(process.listenerCount('SIGTERM'), 0);
});
