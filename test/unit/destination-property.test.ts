import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DestinationError, normalizeDestination } from '../../src/destination/normalize.js';

/*
 * An independent model of the interop contract's Destinations rules, written from the prose of
 * /work/shared/interop.md and the RFCs it leans on, not from src/destination/normalize.ts:
 *
 *   trim; empty is an error; `[...]` must hold a valid IPv6 address (no zone id), followed by nothing
 *   (port 443) or `:port`; otherwise more than one `:` means the whole string must be an IPv6 address
 *   (port 443); one `:` splits host and port; no `:` means port 443; port must be 1-65535; host is
 *   lower-cased.
 *
 * Readings where the prose is silent, chosen to match the Rust original where it can be inferred:
 * "trim" is Rust's str::trim (Unicode White_Space); a port is ASCII decimal digits read by value; an
 * empty host is an error. The model accepts any host characters: ours is deliberately stricter there.
 */

/** Unicode White_Space (what Rust's char::is_whitespace tests). */
const WHITE_SPACE = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
  0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

function modelTrim(text: string): string {
  const chars = [...text];
  while (chars.length > 0 && WHITE_SPACE.has(chars[0]!.codePointAt(0)!)) chars.shift();
  while (chars.length > 0 && WHITE_SPACE.has(chars[chars.length - 1]!.codePointAt(0)!)) chars.pop();
  return chars.join('');
}

/** RFC 3986 dec-octet x4: decimal 0-255 without leading zeros (which some parsers read as octal). */
function modelIsIPv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

/**
 * RFC 4291 section 2.2: eight groups of 1-4 hex digits; one "::" stands for one or more zero groups;
 * the last 32 bits may be written as a dotted quad. No zone id (RFC 6874 syntax is not part of it).
 */
function modelIsIPv6(text: string): boolean {
  const halves = text.split('::');
  if (halves.length > 2) return false;
  const groupCount = (side: string, mayEndInIPv4: boolean): number | undefined => {
    if (side === '') return 0;
    const pieces = side.split(':');
    let count = 0;
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (mayEndInIPv4 && i === pieces.length - 1 && piece.includes('.')) {
        if (!modelIsIPv4(piece)) return undefined;
        count += 2;
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(piece)) {
        count += 1;
      } else {
        return undefined;
      }
    }
    return count;
  };
  if (halves.length === 1) return groupCount(text, true) === 8;
  const head = groupCount(halves[0]!, false);
  const tail = groupCount(halves[1]!, true);
  return head !== undefined && tail !== undefined && head + tail <= 7;
}

function modelPort(text: string): number | undefined {
  if (!/^[0-9]+$/.test(text)) return undefined;
  const significant = text.replace(/^0+/, '');
  if (significant.length > 5) return undefined;
  const port = Number(significant || '0');
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** The model: the normalized authority, or undefined where the contract says "error". */
function model(input: string): string | undefined {
  const text = modelTrim(input);
  if (text === '') return undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return undefined;
    const address = text.slice(1, close);
    if (!modelIsIPv6(address)) return undefined;
    const rest = text.slice(close + 1);
    if (rest === '') return `[${address.toLowerCase()}]:443`;
    if (!rest.startsWith(':')) return undefined;
    const port = modelPort(rest.slice(1));
    return port === undefined ? undefined : `[${address.toLowerCase()}]:${port}`;
  }
  const colons = text.split(':').length - 1;
  if (colons > 1) return modelIsIPv6(text) ? `[${text.toLowerCase()}]:443` : undefined;
  if (colons === 0) return `${text.toLowerCase()}:443`;
  const [host, portText] = text.split(':') as [string, string];
  if (host === '') return undefined;
  const port = modelPort(portText);
  return port === undefined ? undefined : `${host.toLowerCase()}:${port}`;
}

/** Ours, as a value: the authority, or undefined after a DestinationError (anything else is rethrown). */
function ours(input: string): string | undefined {
  try {
    return normalizeDestination(input);
  } catch (error) {
    if (error instanceof DestinationError) return undefined;
    throw error;
  }
}

// --- generators -----------------------------------------------------------------------------------

const HOST_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-'.split('');
/** Whitespace and look-alikes on both sides of the White_Space boundary. */
const SPACES = [
  '',
  ' ',
  '\t',
  '\n',
  '\r',
  '\v',
  '\f',
  '\u0085',
  '\u00a0',
  '\u2003',
  '\u3000',
  '\ufeff',
  '\u200b',
  '\u180e',
  '\u001c',
];
/** Characters the grammar cares about, plus a few hostile ones, so random strings hit real branches. */
const SYNTAX = [...'[]:.%@/ \u0000\n-_0123456789abcdefABCDEF', 'ffff', '::', '443', '65535', '65536', '0'];

const space = fc.constantFrom(...SPACES);
/** Only real White_Space: the agreement property is about valid input, and look-alikes are not. */
const whiteSpace = fc.constantFrom(...SPACES.filter((c) => c === '' || WHITE_SPACE.has(c.codePointAt(0)!)));
const hostText = fc.string({ unit: fc.constantFrom(...HOST_CHARS), minLength: 1, maxLength: 253 });
const portText = fc.oneof(
  fc.integer({ min: 0, max: 70000 }).map(String),
  fc
    .tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 70000 }))
    .map(([z, n]) => '0'.repeat(z) + n),
  fc.string({ unit: fc.constantFrom(...'0123456789'), maxLength: 8 }),
);
const optionalPort = fc.option(
  portText.map((p) => `:${p}`),
  { nil: '' },
);
const randomCase = (text: string) =>
  fc
    .array(fc.boolean(), { minLength: text.length, maxLength: text.length })
    .map((upper) => [...text].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join(''));
const ipv6Text = fc.ipV6().chain(randomCase);
/** IPv6-alphabet strings: mostly near-misses of real addresses, to probe the two IPv6 parsers. */
const ipv6ish = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.'), maxLength: 45 });

const arbitraryInput = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: fc.constantFrom(...SYNTAX), maxLength: 30 }),
  fc
    .tuple(space, fc.string({ unit: fc.constantFrom(...SYNTAX), maxLength: 30 }), space)
    .map((p) => p.join('')),
  fc.tuple(space, hostText, optionalPort, space).map((p) => p.join('')),
  fc.tuple(space, ipv6Text, space).map((p) => p.join('')),
  fc.tuple(space, ipv6Text, optionalPort, space).map(([a, ip, port, b]) => `${a}[${ip}]${port}${b}`),
);

const RUNS = { numRuns: 3000 };

describe('normalizeDestination (properties against an independent model)', () => {
  it('throws nothing but DestinationError', () => {
    fc.assert(
      fc.property(arbitraryInput, (input) => {
        ours(input); // rethrows anything that is not a DestinationError
      }),
      RUNS,
    );
  });

  it('whenever ours accepts, the model accepts with the same output', () => {
    fc.assert(
      fc.property(arbitraryInput, (input) => {
        const result = ours(input);
        if (result !== undefined) assert.equal(result, model(input), JSON.stringify(input));
      }),
      RUNS,
    );
  });

  it('is idempotent', () => {
    fc.assert(
      fc.property(arbitraryInput, (input) => {
        const once = ours(input);
        if (once !== undefined) assert.equal(normalizeDestination(once), once, JSON.stringify(input));
      }),
      RUNS,
    );
  });

  it('agrees exactly with the model on host characters plus an optional port', () => {
    fc.assert(
      fc.property(whiteSpace, hostText, optionalPort, whiteSpace, (before, host, port, after) => {
        const input = `${before}${host}${port}${after}`;
        assert.equal(ours(input), model(input), JSON.stringify(input));
      }),
      RUNS,
    );
  });

  it('agrees exactly with the model on IPv6 literals, bracketed or not, with or without zone and port', () => {
    const zone = fc.option(fc.constantFrom('%eth0', '%1', '%25lo', '%'), { nil: '' });
    fc.assert(
      fc.property(ipv6Text, zone, fc.boolean(), optionalPort, (ip, z, bracketed, port) => {
        const input = bracketed ? `[${ip}${z}]${port}` : `${ip}${z}`;
        const result = ours(input);
        assert.equal(result, model(input), JSON.stringify(input));
        if (z === '' && (bracketed ? port === '' : true)) assert.equal(result, `[${ip.toLowerCase()}]:443`);
      }),
      RUNS,
    );
  });

  it('agrees exactly with the model on IPv6 near-misses', () => {
    fc.assert(
      fc.property(ipv6ish, fc.boolean(), optionalPort, (text, bracketed, port) => {
        const input = bracketed ? `[${text}]${port}` : text;
        assert.equal(ours(input), model(input), JSON.stringify(input));
      }),
      { numRuns: 10000 },
    );
  });
});

describe('the model itself', () => {
  it('follows the contract examples', () => {
    assert.equal(model('api.example.com'), 'api.example.com:443');
    assert.equal(model('API.EXAMPLE.COM:8443'), 'api.example.com:8443');
    assert.equal(model('::1'), '[::1]:443');
    assert.equal(model('FE80::1'), '[fe80::1]:443');
    for (const bad of [
      '',
      '[]',
      '[::1',
      'host:abc',
      'host:0',
      'foo:bar:baz',
      'api.example.com:443:extra',
      '[not-ipv6]:443',
    ]) {
      assert.equal(model(bad), undefined, bad);
    }
  });

  it('validates IPv6 per RFC 4291', () => {
    for (const good of [
      '::',
      '::1',
      '1::',
      '1:2:3:4:5:6:7:8',
      '1:2:3:4:5:6:7::',
      '::2:3:4:5:6:7:8',
      '::ffff:1.2.3.4',
      '1:2:3:4:5:6:1.2.3.4',
      'ABCD::',
    ]) {
      assert.equal(modelIsIPv6(good), true, good);
    }
    for (const bad of [
      '',
      ':',
      ':::',
      '1:2:3:4:5:6:7:8:9',
      '1::2::3',
      '1:2:3:4:5:6:7:8::',
      '::1.2.3',
      '::1.2.3.04',
      '1.2.3.4::',
      '12345::',
      'fe80::1%eth0',
      ':1::',
      '1::2:',
    ]) {
      assert.equal(modelIsIPv6(bad), false, bad);
    }
  });
});
