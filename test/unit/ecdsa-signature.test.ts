import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import * as asn1js from 'asn1js';
import fc from 'fast-check';
import { p1363ToDer } from '../../src/pki/ecdsa-signature.js';

/** r and s of a DER signature as read by asn1js (an independent parser), each as 32 unsigned bytes. */
function decodeWithAsn1js(der: Buffer): { r: Buffer; s: Buffer } {
  const parsed = asn1js.fromBER(new Uint8Array(der).buffer);
  assert.equal(parsed.offset, der.length, 'no bytes after the SEQUENCE');
  const seq = parsed.result as asn1js.Sequence;
  assert.ok(seq instanceof asn1js.Sequence);
  assert.equal(seq.valueBlock.value.length, 2);
  const unsigned32 = (block: asn1js.AsnType | undefined) => {
    assert.ok(block instanceof asn1js.Integer);
    const bytes = Buffer.from(block.valueBlock.valueHexView);
    // Minimal two's-complement: no redundant leading 0x00, and positive.
    if (bytes.length > 1) assert.ok(bytes[0] !== 0 || (bytes[1]! & 0x80) !== 0, 'minimal encoding');
    assert.ok(bytes[0] === 0 || (bytes[0]! & 0x80) === 0, 'non-negative');
    const magnitude = bytes.subarray(bytes.length > 32 ? bytes.length - 32 : 0);
    return Buffer.concat([Buffer.alloc(32 - magnitude.length), magnitude]);
  };
  return { r: unsigned32(seq.valueBlock.value[0]), s: unsigned32(seq.valueBlock.value[1]) };
}

describe('ECDSA P1363 to DER', () => {
  it('gives the bytes OpenSSL writes for real P-256 signatures, which verify as DER', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    for (let i = 0; i < 200; i++) {
      const data = Buffer.from(`message ${i}`);
      const openssl = sign('sha256', data, privateKey);
      const { r, s } = decodeWithAsn1js(openssl);
      const ours = p1363ToDer(Buffer.concat([r, s]));
      assert.deepEqual(ours, openssl);
      assert.ok(verify('sha256', data, publicKey, ours));
    }
  });

  it('property: any r and s (leading zeros, high bits) encode to a strict DER SEQUENCE of the same integers', () => {
    const scalar = fc.oneof(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      // Leading zero bytes, and a high bit right after them: the two cases minimal DER treats specially.
      fc
        .tuple(fc.integer({ min: 0, max: 32 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.boolean())
        .map(([zeros, bytes, high]) => {
          const out = Buffer.from(bytes);
          out.fill(0, 0, zeros);
          if (zeros < 32 && high) out[zeros] = (out[zeros] ?? 0) | 0x80;
          return new Uint8Array(out);
        }),
    );
    fc.assert(
      fc.property(scalar, scalar, (r, s) => {
        const der = p1363ToDer(Buffer.concat([r, s]));
        assert.deepEqual(decodeWithAsn1js(der), { r: Buffer.from(r), s: Buffer.from(s) });
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses input that is not 64 bytes', () => {
    assert.throws(() => p1363ToDer(Buffer.alloc(63)), /is 64 bytes, got 63/);
    assert.throws(() => p1363ToDer(Buffer.alloc(72)), /is 64 bytes, got 72/);
  });
});
