import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  formatTraceparent,
  parseTraceContext,
  parseTraceparent,
  parseTracestate,
  TRACESTATE_MAX_LENGTH,
} from '../../src/tracecontext/traceparent.js';

test('a well-formed version-00 traceparent is continued', () => {
  assert.deepEqual(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'), {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    parentSpanId: '00f067aa0ba902b7',
    flags: 1,
  });
});

test('anything else is ignored rather than echoed into logs', () => {
  for (const bad of [
    undefined,
    ['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    '',
    '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01',
    '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
    '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n{"msg":"forged"}',
    '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7',
  ]) {
    assert.equal(parseTraceparent(bad), undefined, JSON.stringify(bad));
  }
});

test('trace-flags are kept: sampled or not, and unknown bits', () => {
  const id = '4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7';
  assert.equal(parseTraceparent(`00-${id}-00`)?.flags, 0);
  assert.equal(parseTraceparent(`00-${id}-03`)?.flags, 3);
  assert.equal(parseTraceparent(`00-${id}-0g`), undefined);
});

describe('tracestate', () => {
  const parent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

  test('a valid list is kept in canonical form; it counts only with a valid traceparent', () => {
    assert.equal(
      parseTraceContext(parent, ' rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE')?.traceState,
      'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE',
    );
    assert.equal(
      parseTraceContext(parent, ['a=1', 'b=2,,'])?.traceState,
      'a=1,b=2',
      'header lines are one list',
    );
    assert.equal(parseTraceContext(parent, 'tenant@system=x')?.traceState, 'tenant@system=x');
    assert.equal(parseTraceContext('garbage', 'a=1'), undefined);
    assert.equal(parseTraceContext(parent, undefined)?.traceState, undefined);
  });

  test('a malformed list is dropped whole, never echoed', () => {
    for (const bad of [
      '=1',
      'A=1',
      'a',
      'a=1,a=2',
      'a=b=c',
      'a=\u0001',
      'a=x,{"msg":"forged"}=1',
      'a= ',
      ',',
    ]) {
      const ctx = parseTraceContext(parent, bad);
      assert.ok(ctx, 'the traceparent still counts');
      assert.equal(ctx.traceState, undefined, JSON.stringify(bad));
    }
  });

  test('bounded: more than 32 members drops the list; over 512 characters long members go first, then the last', () => {
    const members = (n: number, len = 3) => Array.from({ length: n }, (_, i) => `k${i}=${'v'.repeat(len)}`);
    assert.equal(parseTracestate(members(32).join(','))?.split(',').length, 32);
    assert.equal(parseTracestate(members(33).join(',')), undefined);
    const long = `big=${'x'.repeat(200)}`;
    const cut = parseTracestate([...members(5, 60), long, ...members(5, 40).map((m) => `z${m}`)].join(','))!;
    assert.ok(cut.length <= TRACESTATE_MAX_LENGTH, `${cut.length} characters`);
    assert.ok(!cut.includes('big='), 'the member over 128 characters went first');
    assert.ok(cut.startsWith('k0='), 'the first members are kept');
    assert.equal(parseTracestate('x'.repeat(10_000)), undefined);
  });

  test('formatTraceparent writes what parseTraceparent reads', () => {
    const header = formatTraceparent('4bf92f3577b34da6a3ce929d0e0e4736', '00f067aa0ba902b7', 1);
    assert.equal(header, parent);
    assert.deepEqual(parseTraceparent(header), {
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentSpanId: '00f067aa0ba902b7',
      flags: 1,
    });
  });
});
