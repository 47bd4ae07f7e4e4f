import { createHash } from 'node:crypto';

/**
 * Attacker-controlled text (a claimed identity, a requested authority, a parser's complaint about either)
 * as it may appear in one log line: bounded in length, with a hash of the whole value when cut, and with
 * the characters that make a terminal or a log viewer show something other than what is there made
 * visible. JSON escaping (pino) already covers C0 controls and quotes; it leaves bidirectional overrides
 * (U+202E turns `agent‮gpj.exe` around), isolates, and zero-width characters (which make two different
 * identities look alike) as they are.
 */

/** Characters longer than this are cut (a 20,000-character identity must not become 20 KB per line). */
export const MAX_LOGGED_CHARS = 256;

// Bidi embeddings, overrides and isolates, the ALM/LRM/RLM marks, zero-width space/joiners, word joiner,
// invisible operators, BOM, and the C1 controls (which JSON leaves alone but terminals interpret).
const INVISIBLE_CLASS =
  '[\\u0080-\\u009f\\u061c\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u206f\\ufeff]';
const HAS_INVISIBLE = new RegExp(INVISIBLE_CLASS);
const INVISIBLE = new RegExp(INVISIBLE_CLASS, 'g');

export interface LoggedText {
  readonly text: string;
  /** SHA-256 (hex) of the full value, present only when `text` was cut. */
  readonly sha256: string | undefined;
}

/** `value` made safe to log: escaped, and cut to `max` characters with the full value's hash. */
export function loggedText(value: string, max = MAX_LOGGED_CHARS): LoggedText {
  const escaped = escapeInvisible(value);
  if (escaped.length <= max) return { text: escaped, sha256: undefined };
  return {
    text: `${cut(escaped, max)}…`,
    sha256: createHash('sha256').update(value, 'utf8').digest('hex'),
  };
}

/** Raw bytes (a malformed identity extension) as log text: UTF-8 where valid, the rest as U+FFFD. */
export function loggedBytes(bytes: Buffer, max = MAX_LOGGED_CHARS): LoggedText {
  // Decode at most what can be shown (4 bytes per character), so a huge extension costs nothing.
  const shown = escapeInvisible(bytes.toString('utf8', 0, Math.min(bytes.length, max * 4)));
  const truncated = bytes.length > max * 4 || shown.length > max;
  return {
    text: truncated ? `${cut(shown, max)}…` : shown,
    sha256: truncated ? createHash('sha256').update(bytes).digest('hex') : undefined,
  };
}

/**
 * The first `max` UTF-16 units of `text`, one fewer if the last would be the first half of a surrogate
 * pair (the half would be re-encoded as U+FFFD by the JSON writer).
 */
function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

function escapeInvisible(value: string): string {
  if (!HAS_INVISIBLE.test(value)) return value;
  return value.replace(
    INVISIBLE,
    (c) => `\\u{${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}}`,
  );
}
