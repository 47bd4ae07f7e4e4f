import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LogSuppressor, type SuppressionSummary, sourceOf } from '../../src/observability/log-suppression.js';
import { FakeClock } from './ratelimit-fakes.js';

const WINDOW_MS = 10_000;

function suppressor(opts: { perSource: number; total?: number; maxSources?: number }) {
  const clock = new FakeClock();
  const summaries: SuppressionSummary[] = [];
  const s = new LogSuppressor({
    perSource: opts.perSource,
    total: opts.total ?? opts.perSource * 50,
    windowMs: WINDOW_MS,
    maxSources: opts.maxSources ?? 4096,
    clock,
    onSummary: (summary) => summaries.push(summary),
  });
  /** How many of `n` lines of `kind` from `source` were admitted (written). */
  const send = (source: string, kind: string, n: number) => {
    let written = 0;
    for (let i = 0; i < n; i++) if (s.admit(source, kind)) written++;
    return written;
  };
  return { s, clock, summaries, send };
}

describe('log suppression: repeated refusal lines per source address', () => {
  test('the first deny_log_limit lines of a window are written; the rest are counted by kind', () => {
    const { clock, summaries, send } = suppressor({ perSource: 5 });
    assert.equal(send('10.0.0.1', 'CONNECT denied/malformed_identity', 30), 5);
    assert.equal(send('10.0.0.1', 'bad request', 7), 0);
    assert.deepEqual(summaries, [], 'nothing is summarised before the window ends');
    clock.advance(WINDOW_MS);
    assert.deepEqual(summaries, [
      {
        source: '10.0.0.1',
        suppressed: { 'CONNECT denied/malformed_identity': 25, 'bad request': 7 },
        total: 32,
        windowMs: WINDOW_MS,
      },
    ]);
    // Written + suppressed = every line the source caused.
    const [summary] = summaries as SuppressionSummary[];
    assert.equal(5 + (summary?.total ?? 0), 37);
  });

  test('sources are counted apart; a window without suppressed lines writes no summary', () => {
    const { clock, summaries, send } = suppressor({ perSource: 3 });
    assert.equal(send('a', 'k', 10), 3);
    assert.equal(send('b', 'k', 2), 2);
    clock.advance(WINDOW_MS);
    assert.deepEqual(
      summaries.map((s) => [s.source, s.total]),
      [['a', 7]],
    );
  });

  test('a new window writes in full again, and the old one is summarised first', () => {
    const { clock, summaries, send } = suppressor({ perSource: 2 });
    assert.equal(send('a', 'k', 5), 2);
    clock.time += WINDOW_MS; // no timer has run yet: the next line finds its window over
    assert.equal(send('a', 'k', 1), 1);
    assert.deepEqual(
      summaries.map((s) => s.total),
      [3],
    );
  });

  test('the total per window caps all sources together', () => {
    const { send } = suppressor({ perSource: 5, total: 8 });
    assert.equal(send('a', 'k', 5), 5);
    assert.equal(send('b', 'k', 5), 3);
    assert.equal(send('c', 'k', 5), 0);
  });

  test('beyond maxSources the oldest window is closed early, its summary written', () => {
    const { summaries, send } = suppressor({ perSource: 1, maxSources: 2 });
    send('a', 'k', 4);
    send('b', 'k', 2);
    assert.equal(summaries.length, 0);
    send('c', 'k', 1);
    assert.deepEqual(
      summaries.map((s) => [s.source, s.total]),
      [['a', 3]],
    );
  });

  test('flush writes every pending summary and leaves no timer', () => {
    const { s, clock, summaries, send } = suppressor({ perSource: 1 });
    send('a', 'k', 3);
    send('b', 'j', 2);
    assert.ok(clock.active() > 0);
    s.flush();
    assert.deepEqual(
      summaries.map((x) => [x.source, x.suppressed]),
      [
        ['a', { k: 2 }],
        ['b', { j: 1 }],
      ],
    );
    assert.equal(clock.active(), 0);
  });

  test('the sweep stops once no window is left', () => {
    const { clock, send } = suppressor({ perSource: 1 });
    send('a', 'k', 2);
    clock.advance(WINDOW_MS);
    clock.advance(WINDOW_MS);
    assert.equal(clock.active(), 0);
  });

  test('deny_log_limit = 0 writes every line and arms nothing', () => {
    const { clock, summaries, send } = suppressor({ perSource: 0 });
    assert.equal(send('a', 'k', 1000), 1000);
    clock.advance(WINDOW_MS);
    assert.deepEqual(summaries, []);
    assert.equal(clock.timersArmed, 0);
  });

  test('a source is the address without its port', () => {
    assert.equal(sourceOf('192.0.2.7:51234'), '192.0.2.7');
    assert.equal(sourceOf('[2001:db8::1]:443'), '2001:db8::1');
    assert.equal(sourceOf('unknown'), 'unknown');
  });
});
