import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Pkcs11Error } from '../../src/pkcs11/errors.js';
import {
  formatKeyUri,
  isPkcs11Uri,
  type Pkcs11KeyRef,
  parseKeyUri,
  parsePkcs11Uri,
} from '../../src/pkcs11/uri.js';

/** Throws unless `run` fails with PKCS11_URI_INVALID; returns the message. */
function invalid(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof Pkcs11Error, `expected a Pkcs11Error, got ${String(error)}`);
    assert.equal(error.code, 'PKCS11_URI_INVALID');
    assert.equal(error.kind, 'input');
    return error.message;
  }
  assert.fail('expected PKCS11_URI_INVALID');
}

/*
 * An independent reading of RFC 7512's percent-decoding: the characters the path may carry unencoded
 * (pk11-pchar: unreserved, ":" "[" "]" "@" "!" "$" "'" "(" ")" "*" "+" "," "=" "&") and "%" HEXDIG HEXDIG,
 * decoded with the platform's decodeURIComponent, which agrees on bytes for valid UTF-8.
 */
const PATH_PCHAR = [..."abcXYZ019-._~:[]@!$'()*+,=&"];

describe('PKCS#11 URIs (RFC 7512)', () => {
  it('reads the attributes that name a key, percent-decoded', () => {
    assert.deepEqual(parseKeyUri('pkcs11:token=org-keys;object=org-alice'), {
      token: 'org-keys',
      object: 'org-alice',
    });
    assert.deepEqual(
      parseKeyUri('PKCS11:token=My%20Token;serial=8c5d3deda42f2f11;object=a%2Fb;id=%01%ff;type=private'),
      { token: 'My Token', serial: '8c5d3deda42f2f11', object: 'a/b', id: Buffer.from([0x01, 0xff]) },
    );
    assert.deepEqual(parseKeyUri('pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;id=%aa'), {
      manufacturer: 'SoftHSM project',
      model: 'SoftHSM v2',
      id: Buffer.from([0xaa]),
    });
    assert.deepEqual(parseKeyUri('pkcs11:object=caf%C3%A9'), { object: 'café' });
  });

  it('tells URIs from file names by the scheme, case-insensitively', () => {
    assert.equal(isPkcs11Uri('pkcs11:object=x'), true);
    assert.equal(isPkcs11Uri('PKCS11:object=x'), true);
    assert.equal(isPkcs11Uri('keys/pkcs11:object=x'), false);
    assert.equal(isPkcs11Uri('agent-key.pem'), false);
  });

  it('refuses a PIN in the URI and does not repeat it', () => {
    for (const uri of [
      'pkcs11:token=t;object=o?pin-value=s3cret-PIN-1',
      'pkcs11:token=t;object=o?pin-source=file:/s3cret-PIN-1',
      'pkcs11:token=t;pin-value=s3cret-PIN-1;object=o',
    ]) {
      const message = invalid(() => parseKeyUri(uri));
      assert.match(message, /pin-(value|source) is refused: a PIN in a URI is visible in the process list/);
      assert.match(message, /--pin-env/);
      assert.ok(!message.includes('s3cret-PIN-1'), message);
    }
  });

  it('refuses what it does not support instead of ignoring it', () => {
    const cases: Array<[string, RegExp]> = [
      [
        'pkcs11:token=t;object=o?module-path=/usr/lib/x.so',
        /module-path is refused: name the PKCS#11 module with --pkcs11-module/,
      ],
      ['pkcs11:token=t;object=o?foo=bar', /query attribute "foo" is not supported/],
      ['pkcs11:slot-id=1;object=o', /"slot-id" is not supported: select the token with token=/],
      ['pkcs11:library-manufacturer=x;object=o', /"library-manufacturer" is not supported/],
      ['pkcs11:x-vendor=1;object=o', /path attribute "x-vendor" is not supported/],
      ['pkcs11:token=t;object=o;type=cert', /type= must be "private"/],
      ['pkcs11:token=t', /names no key: add object=LABEL/],
      ['pkcs11:', /names no key/],
      ['pkcs11:object=a;object=b', /"object" appears more than once/],
      ['pkcs11:object=', /object= is empty/],
      ['pkcs11:id=;object=o', /id= is empty/],
      ['pkcs11:Token=t;object=o', /"Token" at position 8 is not an attribute name/],
      ['pkcs11:object=a b', /character U\+0020 at position 16 must be percent-encoded/],
      ['pkcs11:object=a/b', /character U\+002F at position 16 must be percent-encoded/],
      ['pkcs11:object=a%2', /"%" at position 16 is not followed by two hex digits/],
      ['pkcs11:object=%zz', /"%" at position 15 is not followed by two hex digits/],
      ['pkcs11:object=%ff', /object= does not decode to UTF-8 text/],
      ['pkcs11:;object=o', /without "name="/],
      [
        `pkcs11:token=${'t'.repeat(33)};object=o`,
        /longer than the 32 bytes a PKCS#11 token token field holds/,
      ],
      [`pkcs11:serial=${'1'.repeat(17)};object=o`, /longer than the 16 bytes/],
      [`pkcs11:object=${'o'.repeat(5000)}`, /longer than 4096 characters/],
      ['file:object=o', /it must start with "pkcs11:"/],
    ];
    for (const [uri, expected] of cases)
      assert.match(
        invalid(() => parseKeyUri(uri)),
        expected,
        uri,
      );
  });

  it('formats a canonical URI that percent-encodes everything outside "unreserved"', () => {
    assert.equal(
      formatKeyUri(
        { token: 'My Token', object: 'a;b?c', id: Buffer.from([0, 0x7f, 0xff]) },
        { withType: true },
      ),
      'pkcs11:token=My%20Token;object=a%3Bb%3Fc;id=%00%7F%FF;type=private',
    );
    assert.equal(formatKeyUri({ id: Buffer.from('k1') }), 'pkcs11:id=k1');
  });

  const text = (max: number) =>
    fc.string({ unit: 'binary', minLength: 1, maxLength: max }).filter((s) => {
      const bytes = Buffer.byteLength(s, 'utf8');
      // Lone surrogates do not survive UTF-8 (Buffer.from replaces them), so they cannot be labels.
      return bytes >= 1 && bytes <= max && !/[\uD800-\uDFFF]/u.test(s);
    });
  const ref: fc.Arbitrary<Pkcs11KeyRef> = fc
    .record(
      {
        token: text(32),
        manufacturer: text(32),
        serial: text(16),
        model: text(16),
        object: text(64),
        id: fc.uint8Array({ minLength: 1, maxLength: 32 }).map((a) => Buffer.from(a)),
      },
      { requiredKeys: [] },
    )
    .filter((r) => r.object !== undefined || r.id !== undefined);

  it('property: parse(format(ref)) is ref, with or without type=private', () => {
    fc.assert(
      fc.property(ref, fc.boolean(), (r, withType) => {
        assert.deepEqual(parseKeyUri(formatKeyUri(r, { withType })), { ...r });
      }),
      { numRuns: 500 },
    );
  });

  it('property: any string either parses or fails with PKCS11_URI_INVALID, never another error', () => {
    const pieces = fc.constantFrom(
      'pkcs11:',
      'token=',
      'object=',
      'id=',
      'serial=',
      'type=private',
      ';',
      '?',
      '&',
      '=',
      '%',
      '%4',
      '%41',
      '%C3%A9',
      'pin-value=',
      'module-path=',
      'x-a=',
      ' ',
      '/',
      '#',
      'é',
      '\u0000',
      'a',
      'Z',
      '9',
    );
    fc.assert(
      fc.property(fc.array(pieces, { maxLength: 12 }), fc.string({ maxLength: 8 }), (parts, tail) => {
        const uri = parts.join('') + tail;
        try {
          const parsed = parseKeyUri(uri);
          assert.ok(parsed.object !== undefined || parsed.id !== undefined);
        } catch (error) {
          assert.ok(error instanceof Pkcs11Error && error.code === 'PKCS11_URI_INVALID', String(error));
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('property: values decode exactly as decodeURIComponent reads the same percent-encoding', () => {
    const encoded = fc
      .array(
        fc.oneof(
          fc.constantFrom(...PATH_PCHAR),
          fc.integer({ min: 0, max: 255 }).map((b) => `%${b.toString(16).padStart(2, '0')}`),
        ),
        { minLength: 1, maxLength: 24 },
      )
      .map((a) => a.join(''));
    fc.assert(
      fc.property(encoded, (value) => {
        let expected: string | undefined;
        try {
          expected = decodeURIComponent(value);
        } catch {
          expected = undefined; // not UTF-8: the parser must refuse the text attribute
        }
        const parsed = parsePkcs11Uri(`pkcs11:object=${value}`);
        const bytes = parsed.path[0]?.value;
        if (expected !== undefined && !/[\uD800-\uDFFF]/u.test(expected)) {
          assert.deepEqual(bytes, Buffer.from(expected, 'utf8'));
          assert.equal(parseKeyUri(`pkcs11:object=${value}`).object, expected);
        } else {
          invalid(() => parseKeyUri(`pkcs11:object=${value}`));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('property: no error message repeats an attribute value (a mistyped PIN stays off screen and out of logs)', () => {
    const secret = fc.stringMatching(/^[A-Za-z0-9]{12,20}$/);
    const placement = fc.constantFrom(
      (s: string) => `pkcs11:token=t;object=o?pin-value=${s}`,
      (s: string) => `pkcs11:token=t;object=o?x=${s}`,
      (s: string) => `pkcs11:token=t;pin-value=${s}`,
      (s: string) => `pkcs11:token=t;x-pin=${s};object=o`,
      (s: string) => `pkcs11:token=${s}${s}${s};object=o`,
      (s: string) => `pkcs11:object=${s} `,
      (s: string) => `pkcs11:object=${s}%`,
      (s: string) => `pkcs11:token=t;object=o;type=${s}`,
    );
    fc.assert(
      fc.property(secret, placement, (s, place) => {
        assert.ok(!invalid(() => parseKeyUri(place(s))).includes(s));
      }),
      { numRuns: 500 },
    );
  });
});
