import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DestinationError, normalizeDestination, parseDestination } from '../../src/destination/normalize.js';

function accepts(cases: [input: string, authority: string][]): void {
  for (const [input, authority] of cases)
    assert.equal(normalizeDestination(input), authority, JSON.stringify(input));
}

function rejects(inputs: string[], message?: RegExp): void {
  for (const input of inputs) {
    assert.throws(
      () => normalizeDestination(input),
      (error: unknown) => {
        assert.ok(error instanceof DestinationError, `${JSON.stringify(input)}: expected DestinationError`);
        if (message !== undefined) assert.match(error.message, message, JSON.stringify(input));
        return true;
      },
      JSON.stringify(input),
    );
  }
}

describe('normalizeDestination: interop examples', () => {
  it('normalizes every example of the contract', () => {
    accepts([
      ['api.example.com', 'api.example.com:443'],
      ['API.EXAMPLE.COM:8443', 'api.example.com:8443'],
      ['::1', '[::1]:443'],
      ['FE80::1', '[fe80::1]:443'],
    ]);
  });

  it('rejects every rejected form of the contract', () => {
    rejects([
      '',
      '[]',
      '[::1',
      'host:abc',
      'host:0',
      'foo:bar:baz',
      'api.example.com:443:extra',
      '[not-ipv6]:443',
    ]);
  });

  it('says what is wrong', () => {
    rejects([''], /destination is empty/);
    rejects(['[::1'], /opens '\[' without a closing '\]'/);
    rejects(['[not-ipv6]:443'], /\[not-ipv6\] is not an IPv6 address/);
    rejects(['host:abc'], /port "abc" is not a number from 1 to 65535/);
    rejects(['host:0'], /port 0 is outside 1-65535/);
    rejects(['foo:bar:baz'], /several ':' but is not an IPv6 address/);
    rejects(['[::1]x'], /expected ':port' or nothing after '\]'/);
    rejects([':443'], /empty host/);
  });

  it('says that a URL is not a destination, and which destination the URL names', () => {
    rejects(
      ['https://api.example.com/'],
      /is a URL, not a destination: write host, host:port or \[ipv6\]:port/,
    );
    rejects(['https://api.example.com/'], /for this URL write "api\.example\.com:443"/);
    rejects(['http://API.example.com/x?y'], /for this URL write "api\.example\.com:80"/);
    rejects(['https://[::1]:8443'], /for this URL write "\[::1\]:8443"/);
    rejects(['ftp://files.example.com/'], /is a URL, not a destination/);
    // No port can be implied for an unknown scheme, so no suggestion is made up.
    assert.throws(
      () => normalizeDestination('ftp://files.example.com/'),
      (e: Error) => !/for this URL/.test(e.message),
    );
  });
});

describe('normalizeDestination: hosts and ports', () => {
  it('lower-cases names and IPv6 literals, bracketed or not', () => {
    accepts([
      ['Api.Example.Com', 'api.example.com:443'],
      ['WWW.EXAMPLE.ORG:80', 'www.example.org:80'],
      ['[2001:DB8::ABCD]:8443', '[2001:db8::abcd]:8443'],
      ['2001:DB8::ABCD', '[2001:db8::abcd]:443'],
      ['[FE80::1]', '[fe80::1]:443'],
      ['My_Host-1.internal', 'my_host-1.internal:443'],
    ]);
  });

  it('keeps IPv4 literals and IPv4-embedded IPv6 as written', () => {
    accepts([
      ['93.184.216.34', '93.184.216.34:443'],
      ['93.184.216.34:8080', '93.184.216.34:8080'],
      ['[::ffff:1.2.3.4]:80', '[::ffff:1.2.3.4]:80'],
      ['::FFFF:1.2.3.4', '[::ffff:1.2.3.4]:443'],
      ['[::]', '[::]:443'],
    ]);
  });

  it('accepts ports 1 and 65535 and rejects 0, 65536 and non-digits', () => {
    accepts([
      ['example.com:1', 'example.com:1'],
      ['example.com:65535', 'example.com:65535'],
      ['[::1]:1', '[::1]:1'],
      ['[::1]:65535', '[::1]:65535'],
      ['example.com:0443', 'example.com:443'],
    ]);
    rejects(['example.com:65536', '[::1]:65536', 'example.com:99999'], /outside 1-65535/);
    rejects([
      'example.com:',
      '[::1]:',
      'example.com:-1',
      'example.com:+443',
      'example.com:4 43',
      'example.com:0x1bb',
    ]);
    rejects(['example.com:1e3', 'example.com:443.0', 'example.com:٤٤٣', 'example.com:00000']);
  });

  it('reads a port by its value: leading zeros do not change it, however many', () => {
    // Found by the property test: "00443" was accepted but "000443" rejected.
    accepts([
      ['example.com:000443', 'example.com:443'],
      ['example.com:0000000065535', 'example.com:65535'],
      ['[::1]:000001', '[::1]:1'],
    ]);
    rejects(['example.com:0000065536', 'example.com:000000'], /outside 1-65535/);
  });

  it('parses into host, port, ipv6 and authority', () => {
    assert.deepEqual(parseDestination('API.example.com:8443'), {
      host: 'api.example.com',
      port: 8443,
      ipv6: false,
      authority: 'api.example.com:8443',
    });
    assert.deepEqual(parseDestination('[2001:DB8::1]'), {
      host: '2001:db8::1',
      port: 443,
      ipv6: true,
      authority: '[2001:db8::1]:443',
    });
    assert.deepEqual(parseDestination('::1'), { host: '::1', port: 443, ipv6: true, authority: '[::1]:443' });
  });
});

describe('normalizeDestination: whitespace', () => {
  it('trims leading and trailing whitespace', () => {
    accepts([
      ['  api.example.com  ', 'api.example.com:443'],
      ['\tapi.example.com:8443\r\n', 'api.example.com:8443'],
      [' [::1]:80 ', '[::1]:80'],
      ['\u00a0\u3000::1\u2028', '[::1]:443'],
    ]);
  });

  it('trims what the contract calls whitespace (Unicode White_Space), no more and no less', () => {
    // Found by the property test: String.prototype.trim also strips U+FEFF, which is not White_Space,
    // so "\uFEFFapi.example.com" became a different destination than under the contract's trim.
    rejects([
      '\ufeffapi.example.com',
      'api.example.com:443\ufeff',
      '\u200bapi.example.com',
      '\u180eapi.example.com',
    ]);
    accepts([
      ['\u0085api.example.com\u0085', 'api.example.com:443'],
      ['\u1680\u2000\u200a\u202f\u205fapi.example.com', 'api.example.com:443'],
      ['\u000bapi.example.com\u000c', 'api.example.com:443'],
    ]);
  });

  it('rejects whitespace-only and inner whitespace', () => {
    rejects([' ', '\t\r\n', '\u3000'], /destination is empty/);
    rejects(['api.example.com :443', 'api .example.com', 'api.example.com: 443', '[::1] :80', '[ ::1]:80']);
  });
});

describe('normalizeDestination: hostile input', () => {
  it('rejects IPv6 zone ids, bracketed or not', () => {
    rejects(['fe80::1%eth0', '[fe80::1%eth0]', '[fe80::1%eth0]:443', '[fe80::1%25eth0]:443', 'FE80::1%1']);
  });

  it('rejects hosts with spaces, control characters or URL syntax', () => {
    rejects(
      [
        'api example.com',
        'api.example.com\u0000',
        'api\u0000.example.com',
        'api.example.com\r\nX-Injected: 1',
        'api.example.com\nsignature=00',
        'api\u007f.example.com',
        'api\u001b.example.com',
        'api.example.com/path',
        '/api.example.com',
        'user@api.example.com',
        'api.example.com?x',
        'api.example.com#x',
        'api.example.com%2f',
        'api.example.com\\x',
        'a]:443',
        'a[b',
        'xn--bcher-kva.example\u00e9',
        'bücher.example',
        '*.example.com',
      ],
      /host may contain only letters, digits/,
    );
    rejects(['user:pass@api.example.com'], /port "pass@api.example.com" is not a number/);
  });

  it('rejects IPv6-looking text that is not an IPv6 address', () => {
    rejects(['1:2:3:4:5:6:7:8:9', '::1::', '12345::1', '::1.2.3.256', '::01.2.3.4', 'g::1', ':::']);
    rejects(['[1:2:3:4:5:6:7:8:9]', '[::1::]', '[::1]]', '[[::1]]', '[::1]:443:1', '[api.example.com]:443']);
  });

  it('rejects hosts longer than 253 characters and keeps error messages short', () => {
    const label = 'a'.repeat(63);
    const ok = [label, label, label, 'a'.repeat(61)].join('.');
    assert.equal(ok.length, 253);
    assert.equal(normalizeDestination(ok), `${ok}:443`);
    const long = `${ok}a`;
    rejects([long, `${long}:443`], /longer than 253 characters/);
    try {
      normalizeDestination(`${'x'.repeat(10_000)} `);
      assert.fail('expected a DestinationError');
    } catch (error) {
      assert.ok(error instanceof DestinationError);
      assert.ok(error.message.length < 400, `message is ${error.message.length} characters`);
    }
  });

  it('throws a DestinationError that is an Error named DestinationError', () => {
    try {
      normalizeDestination('host:abc');
      assert.fail('expected a DestinationError');
    } catch (error) {
      assert.ok(error instanceof Error);
      assert.ok(error instanceof DestinationError);
      assert.equal(error.name, 'DestinationError');
      assert.match(error.message, /"host:abc"/);
    }
  });
});
