import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { CidrError } from '../../src/egress/cidr.js';
import { EgressGuard, type EgressVerdict } from '../../src/egress/guard.js';

const open = new EgressGuard({ allowCidrs: [], denyCidrs: [], ownAddresses: [] });

function refused(verdict: EgressVerdict): { reason: string; rule: string; address: string } {
  assert.equal(verdict.ok, false, `expected a refusal, got ${JSON.stringify(verdict)}`);
  if (verdict.ok) throw new Error('unreachable');
  return verdict;
}

// One address per special range (both ends where a boundary is easy to get wrong), with the reason
// and the rule the refusal must name.
const SPECIAL: [address: string, reason: string, rule: string][] = [
  ['0.0.0.0', 'unspecified', '0.0.0.0/8'],
  ['0.255.255.255', 'unspecified', '0.0.0.0/8'],
  ['10.0.0.1', 'private', '10.0.0.0/8'],
  ['10.255.255.255', 'private', '10.0.0.0/8'],
  ['100.64.0.0', 'cgnat', '100.64.0.0/10'],
  ['100.127.255.255', 'cgnat', '100.64.0.0/10'],
  ['127.0.0.1', 'loopback', '127.0.0.0/8'],
  ['127.255.255.254', 'loopback', '127.0.0.0/8'],
  ['169.254.169.254', 'link_local', '169.254.0.0/16'],
  ['172.16.0.1', 'private', '172.16.0.0/12'],
  ['172.31.255.255', 'private', '172.16.0.0/12'],
  ['192.0.0.8', 'ietf_protocol', '192.0.0.0/24'],
  ['192.0.2.1', 'documentation', '192.0.2.0/24'],
  ['192.168.1.1', 'private', '192.168.0.0/16'],
  ['198.18.0.1', 'benchmarking', '198.18.0.0/15'],
  ['198.19.255.255', 'benchmarking', '198.18.0.0/15'],
  ['198.51.100.7', 'documentation', '198.51.100.0/24'],
  ['203.0.113.7', 'documentation', '203.0.113.0/24'],
  ['224.0.0.1', 'multicast', '224.0.0.0/4'],
  ['239.255.255.250', 'multicast', '224.0.0.0/4'],
  ['240.0.0.1', 'reserved', '240.0.0.0/4'],
  ['255.255.255.255', 'broadcast', '255.255.255.255/32'],
  ['::', 'unspecified', '::/128'],
  ['0:0:0:0:0:0:0:0', 'unspecified', '::/128'],
  ['::1', 'loopback', '::1/128'],
  ['0:0:0:0:0:0:0:1', 'loopback', '::1/128'],
  ['::ffff:127.0.0.1', 'ipv4_embedded_ipv6', '::ffff:0:0/96'],
  ['::ffff:7f00:1', 'ipv4_embedded_ipv6', '::ffff:0:0/96'],
  ['::FFFF:8.8.8.8', 'ipv4_embedded_ipv6', '::ffff:0:0/96'],
  ['::10.0.0.1', 'ipv4_embedded_ipv6', '::/96'],
  ['::8.8.8.8', 'ipv4_embedded_ipv6', '::/96'],
  ['64:ff9b::7f00:1', 'ipv4_embedded_ipv6', '64:ff9b::/96'],
  ['64:ff9b::8.8.8.8', 'ipv4_embedded_ipv6', '64:ff9b::/96'],
  ['64:ff9b:1::a00:1', 'ipv4_embedded_ipv6', '64:ff9b:1::/48'],
  ['100::1', 'discard', '100::/64'],
  ['2001::1', 'ipv4_embedded_ipv6', '2001::/32'],
  ['2001:2::1', 'benchmarking', '2001:2::/48'],
  ['2001:db8::1', 'documentation', '2001:db8::/32'],
  ['2001:DB8:FFFF::1', 'documentation', '2001:db8::/32'],
  ['2002:7f00:1::1', 'ipv4_embedded_ipv6', '2002::/16'],
  ['3fff::1', 'documentation', '3fff::/20'],
  ['fc00::1', 'unique_local', 'fc00::/7'],
  ['fd12:3456::1', 'unique_local', 'fc00::/7'],
  ['fe80::1', 'link_local', 'fe80::/10'],
  ['febf::1', 'link_local', 'fe80::/10'],
  ['fec0::1', 'site_local', 'fec0::/10'],
  ['ff02::1', 'multicast', 'ff00::/8'],
  ['ff0e::1', 'multicast', 'ff00::/8'],
  ['::2:0:0:1', 'reserved', '::/3'],
  ['4000::1', 'reserved', '4000::/2'],
  ['e000::1', 'reserved', '8000::/1'],
];

const PUBLIC = [
  '1.1.1.1',
  '8.8.8.8',
  '93.184.216.34',
  '100.63.255.255', // just below CGNAT
  '100.128.0.0', // just above CGNAT
  '172.15.255.255', // just below 172.16/12
  '172.32.0.0', // just above 172.16/12
  '198.17.255.255',
  '198.20.0.0',
  '223.255.255.255', // just below multicast
  '2606:4700:4700::1111',
  '2a00:1450:4001:80b::200e',
  '2001:200::1', // first regular allocation after 2001::/23
  '3ffe::1',
];

describe('EgressGuard: special ranges', () => {
  it('refuses every special range with its reason and rule', () => {
    for (const [address, reason, rule] of SPECIAL) {
      const verdict = refused(open.check(address, 443));
      assert.deepEqual(verdict, { ok: false, reason, address, rule }, address);
    }
  });

  it('lets ordinary public unicast through, echoing the address', () => {
    for (const address of PUBLIC) assert.deepEqual(open.check(address, 443), { ok: true, address }, address);
  });

  it('refuses anything that is not a plain IP address, including zone ids', () => {
    for (const address of [
      '',
      'localhost',
      'fe80::1%eth0',
      '2606:4700::1111%1',
      '8.8.8.8 ',
      '[::1]',
      '08.8.8.8',
    ]) {
      assert.equal(refused(open.check(address, 443)).reason, 'invalid_address', JSON.stringify(address));
    }
  });
});

describe('EgressGuard: allow, deny and own addresses', () => {
  it('allowCidrs open a special range, and only that range', () => {
    const guard = new EgressGuard({
      allowCidrs: ['127.0.0.1/32', '10.1.0.0/16'],
      denyCidrs: [],
      ownAddresses: [],
    });
    assert.equal(guard.check('127.0.0.1', 443).ok, true);
    assert.equal(guard.check('10.1.2.3', 443).ok, true);
    assert.equal(refused(guard.check('127.0.0.2', 443)).reason, 'loopback');
    assert.equal(refused(guard.check('10.2.0.1', 443)).reason, 'private');
  });

  it('denyCidrs refuse always, before allowCidrs and for public addresses', () => {
    const guard = new EgressGuard({
      allowCidrs: ['10.0.0.0/8'],
      denyCidrs: ['10.0.5.0/24', '8.8.8.8', '2606:4700::/32'],
      ownAddresses: [],
    });
    assert.equal(guard.check('10.0.4.1', 443).ok, true);
    assert.deepEqual(guard.check('10.0.5.1', 443), {
      ok: false,
      reason: 'deny_cidrs',
      address: '10.0.5.1',
      rule: '10.0.5.0/24',
    });
    assert.equal(refused(guard.check('8.8.8.8', 443)).rule, '8.8.8.8/32');
    assert.equal(refused(guard.check('2606:4700:4700::1111', 443)).reason, 'deny_cidrs');
  });

  it('IPv4 deny entries also catch that IPv4 inside IPv6 forms that carry it', () => {
    const guard = new EgressGuard({
      allowCidrs: ['::ffff:0:0/96', '64:ff9b::/96', '2002::/16', '2001::/32', '::/96'],
      denyCidrs: ['8.8.8.0/24'],
      ownAddresses: [],
    });
    for (const address of [
      '::ffff:8.8.8.8',
      '64:ff9b::8.8.8.8',
      '2002:808:808::1',
      '::8.8.8.8',
      `2001:0:808:808::${((~0x08080808 >>> 16) & 0xffff).toString(16)}:${(~0x08080808 & 0xffff).toString(16)}`,
    ]) {
      const verdict = refused(guard.check(address, 443));
      assert.equal(verdict.reason, 'deny_cidrs', address);
      assert.equal(verdict.rule, '8.8.8.0/24', address);
    }
    assert.equal(guard.check('::ffff:1.1.1.1', 443).ok, true);
  });

  it('refuses the gateway own addresses by exact numeric match', () => {
    const guard = new EgressGuard({
      allowCidrs: [],
      denyCidrs: [],
      ownAddresses: ['93.184.216.34', '2606:4700:0:0:0:0:0:1'],
    });
    assert.deepEqual(guard.check('93.184.216.34', 443), {
      ok: false,
      reason: 'gateway_own_address',
      address: '93.184.216.34',
      rule: '93.184.216.34/32',
    });
    assert.equal(refused(guard.check('2606:4700::1', 443)).reason, 'gateway_own_address');
    assert.equal(refused(guard.check('2606:4700::0001', 443)).rule, '2606:4700::1/128');
    assert.equal(guard.check('93.184.216.35', 443).ok, true);
    assert.equal(guard.check('2606:4700::2', 443).ok, true);
  });

  it('an explicit allow entry covering an own address lets it through', () => {
    const guard = new EgressGuard({
      allowCidrs: ['127.0.0.0/8'],
      denyCidrs: [],
      ownAddresses: ['127.0.0.1'],
    });
    assert.equal(guard.check('127.0.0.1', 443).ok, true);
  });

  it('refuses a protected endpoint at its port even inside allow_cidrs, in every address form', () => {
    const guard = new EgressGuard({
      allowCidrs: ['127.0.0.0/8', '::ffff:0:0/96', '0.0.0.0/8'],
      denyCidrs: [],
      ownAddresses: [],
      protectedEndpoints: [{ cidr: '127.0.0.0/8', port: 8443, what: 'the listener' }],
    });
    assert.deepEqual(guard.check('127.0.0.1', 8443), {
      ok: false,
      reason: 'protected_endpoint',
      address: '127.0.0.1',
      rule: '127.0.0.0/8 port 8443: the listener',
    });
    assert.equal(refused(guard.check('127.0.0.9', 8443)).reason, 'protected_endpoint');
    assert.equal(refused(guard.check('::ffff:127.0.0.1', 8443)).reason, 'protected_endpoint');
    // Other ports of the same addresses are what allow_cidrs is for.
    assert.equal(guard.check('127.0.0.1', 8080).ok, true);
    assert.equal(guard.check('::ffff:127.0.0.1', 8080).ok, true);
  });

  it('protect() adds endpoints after construction (the listener port is known only once listening)', () => {
    const guard = new EgressGuard({
      allowCidrs: ['10.0.0.0/8'],
      denyCidrs: ['10.9.0.0/16'],
      ownAddresses: [],
    });
    assert.equal(guard.check('10.1.2.3', 5432).ok, true);
    guard.protect([{ cidr: '10.1.2.3', port: 5432, what: 'the registry' }]);
    assert.equal(refused(guard.check('10.1.2.3', 5432)).rule, '10.1.2.3/32 port 5432: the registry');
    assert.equal(guard.check('10.1.2.4', 5432).ok, true);
    // deny_cidrs still comes first.
    guard.protect([{ cidr: '10.9.0.1', port: 5432, what: 'the registry' }]);
    assert.equal(refused(guard.check('10.9.0.1', 5432)).reason, 'deny_cidrs');
    assert.throws(
      () => guard.protect([{ cidr: '10.0.0.1/8', port: 1, what: 'x' }]),
      /protectedEndpoints\[0\]/,
    );
    assert.throws(() => guard.protect([{ cidr: '10.0.0.1', port: 0, what: 'x' }]), /port 0 is not 1-65535/);
  });

  it('names the bad entry when configuration is wrong', () => {
    assert.throws(
      () => new EgressGuard({ allowCidrs: ['10.0.0.0/8', '10.0.0.1/8'], denyCidrs: [], ownAddresses: [] }),
      (error: unknown) =>
        error instanceof CidrError && /^allowCidrs\[1\]: .*network form "10\.0\.0\.0\/8"/.test(error.message),
    );
    assert.throws(
      () => new EgressGuard({ allowCidrs: [], denyCidrs: ['nope'], ownAddresses: [] }),
      /^CidrError: denyCidrs\[0\]: CIDR "nope"/,
    );
    assert.throws(
      () => new EgressGuard({ allowCidrs: [], denyCidrs: [], ownAddresses: ['10.0.0.1/32'] }),
      /ownAddresses\[0\]: "10\.0\.0\.1\/32" is not an IPv4 or IPv6 address/,
    );
  });
});

describe('EgressGuard: IPv4 embedded in IPv6', () => {
  it('an IPv4 allow entry never matches the IPv6-mapped form', () => {
    const guard = new EgressGuard({
      allowCidrs: ['127.0.0.0/8', '0.0.0.0/0'],
      denyCidrs: [],
      ownAddresses: [],
    });
    assert.equal(guard.check('127.0.0.1', 443).ok, true);
    for (const address of [
      '::ffff:127.0.0.1',
      '::ffff:7f00:1',
      '0:0:0:0:0:FFFF:127.0.0.1',
      '::ffff:8.8.8.8',
    ]) {
      const verdict = refused(guard.check(address, 443));
      assert.equal(verdict.reason, 'ipv4_embedded_ipv6', address);
      assert.equal(verdict.rule, '::ffff:0:0/96', address);
    }
  });

  it('an IPv6 allow entry lifts the embedded refusal, but the embedded IPv4 must still pass', () => {
    const guard = new EgressGuard({
      allowCidrs: ['::ffff:0:0/96', '64:ff9b::/96'],
      denyCidrs: [],
      ownAddresses: ['93.184.216.34'],
    });
    assert.equal(guard.check('::ffff:8.8.8.8', 443).ok, true);
    assert.equal(guard.check('64:ff9b::8.8.8.8', 443).ok, true);
    assert.deepEqual(guard.check('::ffff:127.0.0.1', 443), {
      ok: false,
      reason: 'loopback',
      address: '::ffff:127.0.0.1',
      rule: '127.0.0.0/8',
    });
    assert.equal(refused(guard.check('64:ff9b::a00:1', 443)).reason, 'private');
    assert.equal(refused(guard.check('64:ff9b::169.254.169.254', 443)).reason, 'link_local');
    assert.equal(refused(guard.check('::ffff:93.184.216.34', 443)).reason, 'gateway_own_address');
  });

  it('allowing both the IPv6 form and the IPv4 it carries lets it through', () => {
    const guard = new EgressGuard({
      allowCidrs: ['::ffff:127.0.0.1', '127.0.0.1'],
      denyCidrs: [],
      ownAddresses: [],
    });
    assert.equal(guard.check('::ffff:127.0.0.1', 443).ok, true);
    assert.equal(refused(guard.check('::ffff:127.0.0.2', 443)).reason, 'ipv4_embedded_ipv6');
  });

  it('vets both IPv4 addresses of an allowed Teredo address', () => {
    const guard = new EgressGuard({ allowCidrs: ['2001::/32'], denyCidrs: [], ownAddresses: [] });
    // Server 8.8.8.8 in bits 32-63, client (bit-inverted) in the low 32 bits.
    const teredo = (client: number) =>
      `2001:0:808:808:0:0:${((~client >>> 16) & 0xffff).toString(16)}:${(~client & 0xffff).toString(16)}`;
    assert.equal(guard.check(teredo(0x01010101), 443).ok, true);
    assert.equal(refused(guard.check(teredo(0x7f000001), 443)).reason, 'loopback');
    assert.equal(refused(guard.check('2001:0:a00:1::1', 443)).reason, 'private'); // server 10.0.0.1
  });

  it('property: no IPv4 address is reachable through an embedding form without an IPv6 allow entry', () => {
    const guard = new EgressGuard({ allowCidrs: ['0.0.0.0/0'], denyCidrs: [], ownAddresses: [] });
    fc.assert(
      fc.property(
        fc.ipV4(),
        fc.constantFrom('mapped', 'mapped-hex', 'compat', 'nat64', '6to4'),
        (v4, form) => {
          const [a, b, c, d] = v4.split('.').map(Number) as [number, number, number, number];
          const hi = ((a << 8) | b).toString(16);
          const lo = ((c << 8) | d).toString(16);
          const address = {
            mapped: `::ffff:${v4}`,
            'mapped-hex': `::FFFF:${hi}:${lo}`,
            compat: `::${v4}`,
            nat64: `64:ff9b::${hi}:${lo}`,
            '6to4': `2002:${hi}:${lo}::1`,
          }[form];
          assert.equal(guard.check(v4, 443).ok, true);
          const verdict = guard.check(address, 443);
          assert.equal(verdict.ok, false, address);
          if (!verdict.ok)
            assert.ok(['ipv4_embedded_ipv6', 'unspecified', 'loopback'].includes(verdict.reason), address);
        },
      ),
    );
  });

  it('property: with the embedding prefixes allowed, the embedded IPv4 gets the IPv4 verdict', () => {
    const guard = new EgressGuard({
      allowCidrs: ['::ffff:0:0/96', '64:ff9b::/96'],
      denyCidrs: [],
      ownAddresses: [],
    });
    fc.assert(
      fc.property(fc.ipV4(), fc.boolean(), (v4, nat64) => {
        const direct = guard.check(v4, 443);
        const embedded = guard.check(nat64 ? `64:ff9b::${v4}` : `::ffff:${v4}`, 443);
        assert.equal(embedded.ok, direct.ok);
        if (!direct.ok && !embedded.ok) assert.equal(embedded.reason, direct.reason);
      }),
    );
  });
});
