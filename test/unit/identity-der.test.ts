import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkBitString,
  checkBoolean,
  checkChildren,
  checkInteger,
  checkOid,
  checkTime,
  DerError,
  decodeTlv,
  expectTlv,
  readTlv,
  Tlv,
} from '../../src/identity/der.js';
import { encodeOidContent, OidError } from '../../src/identity/oid.js';

const bytes = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');

/** Reads the single element filling `der` and returns its header. */
function header(der: Buffer): Tlv {
  const t = new Tlv();
  readTlv(der, 0, der.length, t);
  return t;
}

function ok(check: (der: Uint8Array, t: Tlv, what: string) => void, hex: string): void {
  const der = bytes(hex);
  check(der, header(der), 'field');
}

function bad(check: (der: Uint8Array, t: Tlv, what: string) => void, hex: string, message: RegExp): void {
  const der = bytes(hex);
  const t = header(der);
  assert.throws(
    () => check(der, t, 'field'),
    (e: unknown) => e instanceof DerError && message.test(e.message),
  );
}

describe('decodeTlv / readTlv', () => {
  test('reads a short-form header', () => {
    const t = header(bytes('04 03 aa bb cc'));
    assert.deepEqual({ ...t }, { tag: 0x04, start: 0, contentStart: 2, end: 5 });
  });

  test('reads long-form lengths of one and two bytes', () => {
    const one = Buffer.concat([bytes('04 81 80'), Buffer.alloc(0x80)]);
    assert.deepEqual({ ...header(one) }, { tag: 0x04, start: 0, contentStart: 3, end: 3 + 0x80 });
    const two = Buffer.concat([bytes('30 82 01 00'), Buffer.alloc(0x100)]);
    assert.deepEqual({ ...header(two) }, { tag: 0x30, start: 0, contentStart: 4, end: 4 + 0x100 });
  });

  test('reads at an offset within a parent range', () => {
    const der = bytes('30 06 02 01 05 02 01 07');
    const t = new Tlv();
    readTlv(der, 5, 8, t);
    assert.deepEqual({ ...t }, { tag: 0x02, start: 5, contentStart: 7, end: 8 });
  });

  const rejected: Array<[string, string, RegExp]> = [
    ['an empty range', '', /enclosing element ends/],
    ['a tag without a length', '30', /cut off before its length/],
    ['an indefinite length', '30 80 00 00', /indefinite length/],
    ['a long-form length below 128', '04 81 05 aa bb cc dd ee', /long length form for 5 bytes/],
    ['a length padded with a zero byte', `04 82 00 80 ${'00'.repeat(0x80)}`, /leading zero byte/],
    ['the reserved 0xFF length', '04 ff', /127-byte length field/],
    ['a five-byte length', '04 85 01 00 00 00 00', /5-byte length field/],
    ['a length field cut off', '04 82 01', /cut off inside its length/],
    ['content running past the end', '04 05 aa bb', /claims 5 content bytes but only 2 remain/],
    ['a multi-byte tag', '1f 81 00 00', /multi-byte tag/],
  ];
  for (const [what, hex, message] of rejected) {
    test(`rejects ${what}`, () => {
      const der = bytes(hex);
      const t = new Tlv();
      const problem = decodeTlv(der, 0, der.length, t);
      assert.ok(problem !== null && message.test(problem), `problem was ${String(problem)}`);
      assert.throws(
        () => readTlv(der, 0, der.length, t),
        (e: unknown) => e instanceof DerError,
      );
    });
  }

  test('a child may not run past its parent even when the buffer continues', () => {
    // The OCTET STRING claims 3 bytes but its parent SEQUENCE only holds 2 of them.
    const der = bytes('30 04 04 03 aa bb cc');
    const t = new Tlv();
    assert.match(String(decodeTlv(der, 2, 6, t)), /only 2 remain/);
  });

  test('expectTlv names the field and both tags', () => {
    const der = bytes('31 00');
    assert.throws(
      () => expectTlv(der, 0, 2, 0x30, 'issuer', new Tlv()),
      (e: unknown) =>
        e instanceof DerError && /issuer at offset 0: expected tag 0x30, found 0x31/.test(e.message),
    );
  });
});

describe('content checks', () => {
  test('INTEGER must be minimal two’s complement', () => {
    ok(checkInteger, '02 01 00');
    ok(checkInteger, '02 02 00 80');
    ok(checkInteger, '02 02 ff 7f');
    bad(checkInteger, '02 00', /empty INTEGER/);
    bad(checkInteger, '02 02 00 7f', /redundant leading byte/);
    bad(checkInteger, '02 02 ff 80', /redundant leading byte/);
  });

  test('OID arcs must be minimal and complete', () => {
    ok(checkOid, '06 03 55 04 03');
    ok(checkOid, '06 0a 2b 06 01 04 01 83 bf 30 01 01');
    bad(checkOid, '06 00', /empty OID/);
    bad(checkOid, '06 03 55 80 03', /zero-padded arc/);
    bad(checkOid, '06 02 55 83', /last arc is cut off/);
  });

  test('BIT STRING needs a valid unused-bit count and zero padding', () => {
    ok(checkBitString, '03 01 00');
    ok(checkBitString, '03 02 07 80');
    bad(checkBitString, '03 00', /without its unused-bits byte/);
    bad(checkBitString, '03 02 08 00', /8 unused bits/);
    bad(checkBitString, '03 01 03', /empty BIT STRING with unused bits/);
    bad(checkBitString, '03 02 01 01', /non-zero padding bits/);
  });

  test('BOOLEAN is one byte, 00 or FF', () => {
    ok(checkBoolean, '01 01 ff');
    ok(checkBoolean, '01 01 00');
    bad(checkBoolean, '01 01 01', /not a DER BOOLEAN/);
    bad(checkBoolean, '01 02 ff ff', /not a DER BOOLEAN/);
  });

  test('times use the RFC 5280 forms only', () => {
    const time = (tag: string, text: string): string =>
      `${tag} ${text.length.toString(16).padStart(2, '0')} ${Buffer.from(text).toString('hex')}`;
    ok(checkTime, time('17', '250131235959Z'));
    ok(checkTime, time('18', '20500101000000Z'));
    bad(checkTime, time('17', '2501312359Z'), /YYMMDDHHMMSSZ/);
    bad(checkTime, time('17', '250131235959+0000'), /YYMMDDHHMMSSZ/);
    bad(checkTime, time('17', '251331235959Z'), /YYMMDDHHMMSSZ/);
    bad(checkTime, time('17', '250100235959Z'), /YYMMDDHHMMSSZ/);
    bad(checkTime, time('17', '250131245959Z'), /YYMMDDHHMMSSZ/);
    bad(checkTime, time('17', '25013123595aZ'), /YYMMDDHHMMSSZ/);
    bad(checkTime, time('18', '20500101000000.5Z'), /YYYYMMDDHHMMSSZ/);
    bad(checkTime, time('18', '500101000000Z'), /YYYYMMDDHHMMSSZ/);
  });
});

describe('checkChildren (fields the schema leaves open)', () => {
  const accepts = (hex: string): void => {
    const der = bytes(hex);
    checkChildren(der, 0, der.length, 0);
  };
  const rejects = (hex: string, message: RegExp): void => {
    const der = bytes(hex);
    assert.throws(
      () => checkChildren(der, 0, der.length, 0),
      (e: unknown) => e instanceof DerError && message.test(e.message),
    );
  };

  test('accepts nested sequences, context tags and ordinary strings', () => {
    accepts('05 00');
    accepts('30 0b a0 03 02 01 01 13 01 41 0c 01 42');
    accepts('1e 02 00 41 1c 04 00 00 00 41 80 02 ff ff');
  });

  test('rejects bad content anywhere in the tree', () => {
    rejects('05 01 00', /NULL at offset 0 has content/);
    rejects('30 02 02 01', /claims 1 content bytes but only 0 remain/);
    rejects('30 04 a0 02 02 00', /empty INTEGER/);
    rejects('1e 03 00 41 00', /BMPString at offset 0 has an odd length/);
    rejects('1c 03 00 00 41', /UniversalString/);
  });

  test('rejects constructed strings, end-of-contents and exotic universal types', () => {
    rejects('24 03 04 01 aa', /tag 0x24/);
    rejects('00 00', /tag 0x00/);
    rejects('09 01 00', /tag 0x09/);
  });

  test('bounds nesting depth instead of recursing without limit', () => {
    let der = bytes('05 00');
    for (let i = 0; i < 40; i++) der = Buffer.concat([Buffer.from([0x30, der.length]), der]);
    assert.throws(
      () => checkChildren(der, 0, der.length, 0),
      (e: unknown) => e instanceof DerError && /nest deeper than 32/.test(e.message),
    );
  });
});

describe('encodeOidContent', () => {
  const vectors: Array<[string, string]> = [
    ['1.3.6.1.4.1.57264.1.1', '2b 06 01 04 01 83 bf 30 01 01'],
    ['2.5.4.3', '55 04 03'],
    ['1.2.840.113549.1.1.11', '2a 86 48 86 f7 0d 01 01 0b'],
    ['0.0', '00'],
    ['2.999.3', '88 37 03'],
    [
      '2.25.329800735698586629295641978511506172918',
      '69 83 f0 9d a7 eb cf de e0 c7 a1 a7 b2 c0 94 8c c8 f9 d7 76',
    ],
  ];
  for (const [dotted, hex] of vectors) {
    test(`encodes ${dotted}`, () => {
      assert.equal(encodeOidContent(dotted).toString('hex'), bytes(hex).toString('hex'));
    });
  }

  test('its output passes the DER OID check', () => {
    const content = encodeOidContent('1.3.6.1.4.1.57264.1.1');
    const der = Buffer.concat([Buffer.from([0x06, content.length]), content]);
    checkOid(der, header(der), 'identity OID');
  });

  const rejected: Array<[string, RegExp]> = [
    ['', /not in dotted form/],
    ['1', /not in dotted form/],
    ['1.3.', /not in dotted form/],
    [' 1.3.6', /not in dotted form/],
    ['1.3.6.x', /not in dotted form/],
    ['1.03.6', /leading zero/],
    ['3.1', /first arc must be 0, 1 or 2/],
    ['1.40', /second arc must be at most 39/],
  ];
  for (const [dotted, message] of rejected) {
    test(`rejects ${JSON.stringify(dotted)}`, () => {
      assert.throws(
        () => encodeOidContent(dotted),
        (e: unknown) => e instanceof OidError && message.test(e.message),
      );
    });
  }
});
