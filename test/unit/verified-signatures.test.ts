import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VerifiedSignatureCache } from '../../src/policy/verified-signatures.js';

const key = Buffer.from('signer-spki');
const sig = Buffer.from('signature');
const msg = Buffer.from('canonical bytes');

/** A verify function that counts its calls and answers `result`. */
function counting(result: boolean): { verify: () => boolean; calls: () => number } {
  let calls = 0;
  return {
    verify: () => {
      calls++;
      return result;
    },
    calls: () => calls,
  };
}

describe('VerifiedSignatureCache', () => {
  test('verifies once, then answers from memory for the same key, signature and bytes', () => {
    const cache = new VerifiedSignatureCache(8);
    const v = counting(true);
    assert.equal(cache.check(key, sig, msg, v.verify), true);
    assert.equal(cache.check(key, sig, msg, v.verify), true);
    assert.equal(v.calls(), 1);
  });

  test('never remembers a failure: a bad signature is verified (and refused) every time', () => {
    const cache = new VerifiedSignatureCache(8);
    const v = counting(false);
    assert.equal(cache.check(key, sig, msg, v.verify), false);
    assert.equal(cache.check(key, sig, msg, v.verify), false);
    assert.equal(v.calls(), 2);
    assert.equal(cache.size, 0);
  });

  test('a change to any of key, signature or bytes is a miss that runs the real verify', () => {
    const cache = new VerifiedSignatureCache(8);
    cache.check(key, sig, msg, () => true);
    for (const [k, s, m] of [
      [Buffer.from('signer-spkj'), sig, msg],
      [key, Buffer.from('signaturf'), msg],
      [key, sig, Buffer.from('canonical bytez')],
    ] as const) {
      const v = counting(false);
      assert.equal(cache.check(k, s, m, v.verify), false);
      assert.equal(v.calls(), 1);
    }
  });

  test('moving bytes across the key/signature/message boundary is a different entry', () => {
    const cache = new VerifiedSignatureCache(8);
    cache.check(Buffer.from('ab'), Buffer.from('c'), Buffer.from('d'), () => true);
    const v = counting(false);
    assert.equal(cache.check(Buffer.from('a'), Buffer.from('bc'), Buffer.from('d'), v.verify), false);
    assert.equal(cache.check(Buffer.from('a'), Buffer.from('b'), Buffer.from('cd'), v.verify), false);
    assert.equal(v.calls(), 2);
  });

  test('is bounded: the oldest entry goes first', () => {
    const cache = new VerifiedSignatureCache(2);
    const m = (i: number) => Buffer.from(`message ${i}`);
    for (let i = 0; i < 3; i++) cache.check(key, sig, m(i), () => true);
    assert.equal(cache.size, 2);
    const v = counting(true);
    cache.check(key, sig, m(2), v.verify);
    cache.check(key, sig, m(1), v.verify);
    assert.equal(v.calls(), 0, 'the two newest are still remembered');
    cache.check(key, sig, m(0), v.verify);
    assert.equal(v.calls(), 1, 'the oldest was evicted and is verified again');
  });
});
