import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTraceparent } from '../../src/tracecontext/traceparent.js';

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
