import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CidrError,
  cidrContains,
  formatIpAddress,
  parseCidr,
  parseIpAddress,
  sameIpAddress,
} from '../../src/egress/cidr.js';

describe('parseCidr', () => {
  it('normalizes IPv4 and IPv6 networks', () => {
    const cases: [string, string][] = [
      ['10.0.0.0/8', '10.0.0.0/8'],
      ['0.0.0.0/0', '0.0.0.0/0'],
      ['::1/128', '::1/128'],
      ['fd00::/8', 'fd00::/8'],
      ['FD00::/8', 'fd00::/8'],
      ['2001:0DB8:0000:0000::/32', '2001:db8::/32'],
      ['::/0', '::/0'],
      ['::ffff:0:0/96', '::ffff:0:0/96'],
      ['::ffff:10.0.0.0/104', '::ffff:a00:0/104'],
      ['1:0:0:1:0:0:0:1/128', '1:0:0:1::1/128'],
      ['1:0:0:0:1:0:0:0/128', '1::1:0:0:0/128'],
      ['  192.168.0.0/16  ', '192.168.0.0/16'],
    ];
    for (const [input, text] of cases) assert.equal(parseCidr(input).text, text, input);
  });

  it('treats a bare address as /32 or /128', () => {
    const v4 = parseCidr('203.0.113.7');
    assert.equal(v4.text, '203.0.113.7/32');
    assert.equal(v4.prefix, 32);
    assert.equal(v4.family, 4);
    const v6 = parseCidr('2001:DB8::7');
    assert.equal(v6.text, '2001:db8::7/128');
    assert.equal(v6.prefix, 128);
    assert.equal(v6.family, 6);
  });

  it('rejects bad entries with an error naming the entry', () => {
    const cases: [string, RegExp][] = [
      ['', /empty CIDR entry/],
      ['   ', /empty CIDR entry/],
      ['example.com/24', /"example.com" is not an IPv4 or IPv6 address/],
      ['10.0.0/8', /"10.0.0" is not an IPv4 or IPv6 address/],
      ['010.0.0.0/8', /is not an IPv4 or IPv6 address/],
      ['1.2.3.256', /is not an IPv4 or IPv6 address/],
      ['[::1]/128', /is not an IPv4 or IPv6 address/],
      ['fe80::1%eth0', /zone ids/],
      ['fe80::%1/64', /zone ids/],
      ['10.0.0.0/33', /prefix "33" must be a whole number from 0 to 32 for IPv4/],
      ['::/129', /prefix "129" must be a whole number from 0 to 128 for IPv6/],
      ['10.0.0.0/-1', /prefix "-1"/],
      ['10.0.0.0/', /prefix ""/],
      ['10.0.0.0/8/8', /prefix "8\/8"/],
      ['10.0.0.0/ 8', /prefix " 8"/],
      ['10.0.0.0/1e1', /prefix "1e1"/],
    ];
    for (const [input, message] of cases) {
      assert.throws(
        () => parseCidr(input),
        (error: unknown) => {
          assert.ok(error instanceof CidrError, `${input}: expected CidrError`);
          assert.match(error.message, message, input);
          return true;
        },
      );
    }
  });

  it('refuses host bits and suggests the network form', () => {
    assert.throws(
      () => parseCidr('10.1.2.3/8'),
      /host bits set after \/8: write the network form "10.0.0.0\/8"/,
    );
    assert.throws(() => parseCidr('fd12::1/8'), /write the network form "fd00::\/8"/);
    assert.throws(() => parseCidr('192.168.1.1/24'), /"192.168.1.0\/24"/);
  });
});

describe('cidrContains', () => {
  it('matches IPv4 boundaries exactly', () => {
    const cidr = parseCidr('100.64.0.0/10');
    assert.equal(cidrContains(cidr, '100.64.0.0'), true);
    assert.equal(cidrContains(cidr, '100.127.255.255'), true);
    assert.equal(cidrContains(cidr, '100.63.255.255'), false);
    assert.equal(cidrContains(cidr, '100.128.0.0'), false);
  });

  it('matches IPv6 in every textual form', () => {
    const cidr = parseCidr('fe80::/10');
    assert.equal(cidrContains(cidr, 'fe80::1'), true);
    assert.equal(cidrContains(cidr, 'FE80::1'), true);
    assert.equal(cidrContains(cidr, 'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), true);
    assert.equal(cidrContains(cidr, 'fec0::'), false);
    assert.equal(cidrContains(cidr, 'fe7f:ffff::'), false);
    const mapped = parseCidr('::ffff:0:0/96');
    assert.equal(cidrContains(mapped, '::ffff:127.0.0.1'), true);
    assert.equal(cidrContains(mapped, '::FFFF:7f00:1'), true);
    assert.equal(cidrContains(mapped, '0:0:0:0:0:ffff:7f00:1'), true);
    assert.equal(cidrContains(mapped, '::fffe:7f00:1'), false);
    assert.equal(cidrContains(parseCidr('::/128'), '::'), true);
    assert.equal(cidrContains(parseCidr('::/128'), '0:0:0:0:0:0:0:0'), true);
    assert.equal(cidrContains(parseCidr('::/128'), '::1'), false);
  });

  it('never matches across families, not even for IPv4-mapped IPv6', () => {
    assert.equal(cidrContains(parseCidr('127.0.0.0/8'), '::ffff:127.0.0.1'), false);
    assert.equal(cidrContains(parseCidr('0.0.0.0/0'), '::ffff:7f00:1'), false);
    assert.equal(cidrContains(parseCidr('::/0'), '127.0.0.1'), false);
    assert.equal(cidrContains(parseCidr('::ffff:0:0/96'), '127.0.0.1'), false);
  });

  it('/0 holds every address of its family', () => {
    assert.equal(cidrContains(parseCidr('0.0.0.0/0'), '255.255.255.255'), true);
    assert.equal(cidrContains(parseCidr('::/0'), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), true);
  });

  it('throws rather than answering for something that is not an address', () => {
    const cidr = parseCidr('10.0.0.0/8');
    for (const bad of ['', 'localhost', '10.0.0.1%eth0', 'fe80::1%eth0', '10.0.0.1/32', '[::1]']) {
      assert.throws(() => cidrContains(cidr, bad), CidrError, bad);
    }
  });
});

describe('parseIpAddress / formatIpAddress', () => {
  it('parses every IPv6 textual form to the same numbers', () => {
    const forms = [
      '::ffff:192.0.2.1',
      '::FFFF:C000:201',
      '0:0:0:0:0:ffff:c000:0201',
      '0000:0000:0000:0000:0000:FFFF:192.0.2.1',
    ];
    const first = parseIpAddress(forms[0]!);
    assert.ok(first);
    for (const form of forms) {
      const ip = parseIpAddress(form);
      assert.ok(ip, form);
      assert.ok(sameIpAddress(first, ip), form);
      assert.equal(formatIpAddress(ip), '::ffff:c000:201');
    }
  });

  it('refuses zone ids and non-addresses', () => {
    for (const bad of [
      'fe80::1%eth0',
      'fe80::1%25eth0',
      '1.2.3.4%0',
      '',
      ' 1.2.3.4',
      '1.2.3',
      '::1::',
      'g::1',
    ]) {
      assert.equal(parseIpAddress(bad), undefined, bad);
    }
  });

  it('formats RFC 5952 compression (longest zero run, first on a tie, not a single group)', () => {
    const cases: [string, string][] = [
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
      ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
      ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
      ['2001:DB8:0:0:0:0:2:1', '2001:db8::2:1'],
    ];
    for (const [input, output] of cases) {
      const ip = parseIpAddress(input);
      assert.ok(ip, input);
      assert.equal(formatIpAddress(ip), output, input);
    }
  });
});

// An independent model with bigint arithmetic: containment is "the top `prefix` bits are equal".
function toBigInt(groups: number[]): bigint {
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

function fromBigInt(value: bigint) {
  return {
    family: 6 as const,
    words: Uint32Array.from([0, 1, 2, 3], (i) => Number((value >> BigInt(96 - 32 * i)) & 0xffffffffn)),
  };
}

const ipv6Groups = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 });

describe('cidrContains (properties)', () => {
  it('agrees with a bigint model for random IPv6 networks and addresses', () => {
    fc.assert(
      fc.property(
        ipv6Groups,
        ipv6Groups,
        fc.integer({ min: 0, max: 128 }),
        fc.boolean(),
        fc.boolean(),
        (netGroups, addrGroups, prefix, inside, compressed) => {
          const hostBits = BigInt(128 - prefix);
          const hostMask = (1n << hostBits) - 1n;
          const network = toBigInt(netGroups) & ~hostMask;
          // Half the cases put the address inside the network so both answers get exercised.
          const value = inside ? network | (toBigInt(addrGroups) & hostMask) : toBigInt(addrGroups);
          const networkText = formatIpAddress(fromBigInt(network));
          const cidr = parseCidr(`${networkText}/${prefix}`);
          const address = compressed
            ? formatIpAddress(fromBigInt(value))
            : [...Array(8).keys()]
                .map((i) => ((value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16).toUpperCase())
                .join(':');
          const expected = (value & ~hostMask) === network;
          if (inside) assert.equal(expected, true);
          assert.equal(cidrContains(cidr, address), expected, `${cidr.text} ∋ ${address}`);
          // The network itself is always inside, whatever textual form it is written in.
          assert.equal(cidrContains(cidr, networkText), true);
        },
      ),
    );
  });

  it('agrees with a bigint model for random IPv4 networks and addresses', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (netText, address, prefix) => {
        const value = (text: string) => text.split('.').reduce((acc, p) => (acc << 8n) | BigInt(p), 0n);
        const hostBits = BigInt(32 - prefix);
        const network = (value(netText) >> hostBits) << hostBits;
        const networkText = [24n, 16n, 8n, 0n].map((s) => String((network >> s) & 255n)).join('.');
        const cidr = parseCidr(`${networkText}/${prefix}`);
        assert.equal(cidr.text, `${networkText}/${prefix}`);
        assert.equal(cidrContains(cidr, address), value(address) >> hostBits === network >> hostBits);
      }),
    );
  });

  it('round-trips any IPv6 address through format and parse', () => {
    fc.assert(
      fc.property(fc.ipV6(), (text) => {
        const ip = parseIpAddress(text);
        assert.ok(ip, text);
        const again = parseIpAddress(formatIpAddress(ip));
        assert.ok(again);
        assert.ok(sameIpAddress(ip, again));
        assert.equal(formatIpAddress(again), formatIpAddress(ip));
      }),
    );
  });
});
