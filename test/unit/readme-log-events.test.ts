import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { LogEvent } from '../../src/observability/events.js';

/**
 * Operators match on log events; an event the README's "Log events" table does not list is one they cannot
 * know to alert on. Every event name the gateway logs must have a row there.
 */

const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');

function logEventsSection(text: string): string {
  const start = text.indexOf('\n## Log events\n');
  assert.ok(start >= 0, 'README has a "## Log events" section');
  const end = text.indexOf('\n## ', start + 1);
  return text.slice(start, end < 0 ? undefined : end);
}

test('every LogEvent has a row in the README log events table', () => {
  const rows = logEventsSection(readme)
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .map((line) => line.split(' | ')[0] ?? '');
  const documented = new Set(rows.flatMap((cell) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1])));
  const missing = Object.values(LogEvent).filter((name) => !documented.has(name));
  assert.deepEqual(missing, [], `undocumented log events: ${missing.join(', ')}`);
});

test('the tunnel closed row documents its throttling fields', () => {
  const row = logEventsSection(readme)
    .split('\n')
    .find((line) => line.startsWith('| `tunnel closed` |'));
  assert.ok(row !== undefined);
  for (const field of ['throttled_ms', 'throttled_ms_client_to_dest', 'throttled_ms_dest_to_client']) {
    assert.ok(row.includes(`\`${field}\``), field);
  }
});
