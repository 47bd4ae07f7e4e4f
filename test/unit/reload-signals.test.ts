import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { handleReloadAndIgnoredSignals } from '../../src/process/reload-signals.js';

// Node's test runner turns on diagnostic reports on SIGUSR2 in the test process: an emitted SIGUSR2
// would write a report file into the working directory.
let reportOnSignal = false;
before(() => {
  reportOnSignal = process.report.reportOnSignal;
  process.report.reportOnSignal = false;
});
after(() => {
  process.report.reportOnSignal = reportOnSignal;
});

// process.emit runs the listeners without sending a real signal to the test process.
const emit = (signal: NodeJS.Signals) =>
  (process.emit as (event: string, arg: string) => boolean)(signal, signal);

function recorder() {
  const logged: string[] = [];
  const reloaded: string[] = [];
  const crashed: unknown[] = [];
  let fail = false;
  const signals = handleReloadAndIgnoredSignals<string>({
    log: (signal, what) => logged.push(`${signal}:${what}`),
    reload: async (target) => {
      if (fail) {
        fail = false;
        throw new Error('boom');
      }
      reloaded.push(target);
    },
    reloadCrashed: (error) => crashed.push(error),
  });
  return {
    signals,
    logged,
    reloaded,
    crashed,
    failNext() {
      fail = true;
    },
  };
}

test('a SIGHUP during start-up is logged at once and reloads once start-up is done', async () => {
  const r = recorder();
  try {
    emit('SIGHUP');
    emit('SIGHUP');
    assert.deepEqual(r.logged, ['SIGHUP:reload', 'SIGHUP:reload']);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(r.reloaded, [], 'nothing to reload yet');
    r.signals.started('gateway');
    await r.signals.settled();
    assert.deepEqual(r.reloaded, ['gateway', 'gateway'], 'one reload per SIGHUP, in order');
  } finally {
    r.signals.cancel();
  }
});

test('SIGUSR1 and SIGUSR2 are logged as ignored and change nothing', async () => {
  const r = recorder();
  try {
    r.signals.started('gateway');
    emit('SIGUSR1');
    emit('SIGUSR2');
    await r.signals.settled();
    assert.deepEqual(r.logged, ['SIGUSR1:ignored', 'SIGUSR2:ignored']);
    assert.deepEqual(r.reloaded, []);
  } finally {
    r.signals.cancel();
  }
});

test('while stopping, SIGHUP is still handled (no exit) but reloads nothing', async () => {
  const r = recorder();
  try {
    r.signals.started('gateway');
    r.signals.stopping();
    emit('SIGHUP');
    await r.signals.settled();
    assert.deepEqual(r.logged, ['SIGHUP:stopping']);
    assert.deepEqual(r.reloaded, []);
    assert.equal(process.listenerCount('SIGHUP'), 1, 'the listener stays until exit');
  } finally {
    r.signals.cancel();
  }
});

test('a reload that throws is reported and the next SIGHUP still reloads', async () => {
  const r = recorder();
  try {
    r.signals.started('gateway');
    r.failNext();
    emit('SIGHUP');
    await r.signals.settled();
    assert.equal((r.crashed[0] as Error).message, 'boom');
    emit('SIGHUP');
    await r.signals.settled();
    assert.deepEqual(r.reloaded, ['gateway']);
  } finally {
    r.signals.cancel();
  }
});

test('cancel (start-up failed) drops queued reloads and removes the listeners', async () => {
  const counts = ['SIGHUP', 'SIGUSR1', 'SIGUSR2'].map((s) => process.listenerCount(s));
  const r = recorder();
  emit('SIGHUP');
  r.signals.cancel();
  await r.signals.settled();
  assert.deepEqual(r.reloaded, []);
  assert.deepEqual(
    ['SIGHUP', 'SIGUSR1', 'SIGUSR2'].map((s) => process.listenerCount(s)),
    counts,
  );
});
