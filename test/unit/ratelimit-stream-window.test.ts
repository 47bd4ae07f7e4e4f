import assert from 'node:assert/strict';
import { test } from 'node:test';
import { streamWindowForUpload } from '../../src/ratelimit/stream-window.js';

const MIB = 1024 * 1024;
const off = { bytesPerSecond: 0, burstBytes: MIB };
const rate = (bytesPerSecond: number) => ({ bytesPerSecond, burstBytes: MIB });

test('an unlimited identity keeps the configured window', () => {
  assert.equal(streamWindowForUpload([off, off], MIB), MIB);
});

test('a limited identity gets a sixteenth of a second of its rate, at least 65535, at most the configured', () => {
  assert.equal(streamWindowForUpload([rate(64 * 1024), off], MIB), 65_535);
  assert.equal(streamWindowForUpload([rate(2 * MIB), off], MIB), 128 * 1024);
  assert.equal(streamWindowForUpload([rate(100 * MIB), off], MIB), MIB);
});

test('the stricter of the identity and the all-identity limit decides', () => {
  assert.equal(streamWindowForUpload([rate(100 * MIB), rate(2 * MIB)], MIB), 128 * 1024);
  assert.equal(streamWindowForUpload([off, rate(4 * MIB)], MIB), 256 * 1024);
});
