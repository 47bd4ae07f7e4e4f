import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { loggedBytes, loggedText, MAX_LOGGED_CHARS } from '../../src/observability/log-text.js';

const sha256 = (value: string | Buffer) => createHash('sha256').update(value).digest('hex');

describe('log text: attacker-controlled strings as they may appear in a log line', () => {
  test('ordinary text, non-Latin letters included, is logged as it is, without a hash', () => {
    for (const value of ['agent-alpha', 'agent-ß-日本-émile', 'a'.repeat(MAX_LOGGED_CHARS)]) {
      assert.deepEqual(loggedText(value), { text: value, sha256: undefined });
    }
  });

  test('a 20,000-character value is cut, marked with …, and carries the hash of the whole value', () => {
    const value = `agent-${'x'.repeat(20_000)}`;
    const logged = loggedText(value);
    assert.equal(logged.text, `${value.slice(0, MAX_LOGGED_CHARS)}…`);
    assert.equal(logged.sha256, sha256(value));
  });

  test('bidi overrides, isolates, marks, zero-width characters, BOM and C1 controls are escaped', () => {
    const cases: Array<[string, string]> = [
      ['agent\u202Egpj.exe', 'agent\\u{202E}gpj.exe'],
      ['a\u200Bb\u200Cc\u200Dd\u2060e', 'a\\u{200B}b\\u{200C}c\\u{200D}d\\u{2060}e'],
      ['\u2066isolated\u2069', '\\u{2066}isolated\\u{2069}'],
      ['\u061C\u200E\u200F', '\\u{061C}\\u{200E}\\u{200F}'],
      ['\uFEFFbom', '\\u{FEFF}bom'],
      ['c1\u0085\u009B', 'c1\\u{0085}\\u{009B}'],
    ];
    for (const [value, text] of cases) assert.deepEqual(loggedText(value), { text, sha256: undefined });
  });

  test('escaping happens before the cut: a value of invisible characters cannot grow the line', () => {
    const value = '\u202E'.repeat(1000);
    const logged = loggedText(value);
    assert.equal(logged.text.length, MAX_LOGGED_CHARS + 1);
    assert.ok(!logged.text.includes('\u202E'));
    assert.equal(logged.sha256, sha256(value));
  });

  test('the cut never splits a surrogate pair', () => {
    const value = `${'a'.repeat(MAX_LOGGED_CHARS - 1)}😀tail`;
    assert.equal(loggedText(value).text, `${'a'.repeat(MAX_LOGGED_CHARS - 1)}…`);
    assert.equal(loggedBytes(Buffer.from(value)).text, `${'a'.repeat(MAX_LOGGED_CHARS - 1)}…`);
  });

  test('raw bytes: UTF-8 where valid, U+FFFD where not, escaped', () => {
    assert.deepEqual(loggedBytes(Buffer.from('alpha\u202E', 'utf8')), {
      text: 'alpha\\u{202E}',
      sha256: undefined,
    });
    assert.deepEqual(loggedBytes(Buffer.from([0x61, 0xff, 0xfe, 0x62])), {
      text: 'a\uFFFD\uFFFDb',
      sha256: undefined,
    });
  });

  test('raw bytes: a 20,000-byte value is cut and carries the hash of all its bytes', () => {
    const bytes = Buffer.concat([Buffer.from([0x16, 0x82, 0x4e, 0x20]), Buffer.alloc(20_000, 0x61)]);
    const logged = loggedBytes(bytes);
    assert.equal(logged.text.length, MAX_LOGGED_CHARS + 1);
    assert.ok(logged.text.endsWith('…'));
    assert.equal(logged.sha256, sha256(bytes));
  });
});
