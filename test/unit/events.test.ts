import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DENY_REASON_KINDS, DENY_REASONS, LogEvent, LogField } from '../../src/observability/events.js';

test('the interop event and field names are spelt as the contract says', () => {
  const events = Object.values(LogEvent);
  for (const name of [
    'listening',
    'TLS handshake failed',
    'CONNECT allowed',
    'CONNECT denied',
    'TCP connect failed',
    'tunnel closed',
  ]) {
    assert.ok(events.includes(name as never), `missing event ${name}`);
  }
  assert.equal(new Set(events).size, events.length, 'two events share a name');
  assert.deepEqual(Object.values(LogField).sort(), [
    'bytes_client_to_dest',
    'bytes_dest_to_client',
    'deny_reason',
    'dest_authority',
    'policy_decision',
    'source_identity',
    'source_peer_addr',
  ]);
});

test('every deny reason is documented and snake_case', () => {
  assert.equal(DENY_REASON_KINDS.length, 19);
  for (const kind of DENY_REASON_KINDS) {
    assert.match(kind, /^[a-z]+(_[a-z]+)*$/);
    assert.ok(DENY_REASONS[kind].length > 10, `${kind} has no description`);
  }
});

test('GatewayEvents: every subscriber gets each event once, in order, and can leave', async () => {
  const { GatewayEvents } = await import('../../src/session/events.js');
  const events = new GatewayEvents();
  const seen: string[] = [];
  const leave = events.subscribe({ registryStatus: (e) => seen.push(`a:${e.available}`) });
  events.subscribe({ registryStatus: (e) => seen.push(`b:${e.available}`) });
  assert.equal(events.has('registryStatus'), true);
  assert.equal(events.has('tunnelOpened'), false);
  events.emit('registryStatus', { available: false, error: 'down' });
  leave();
  events.emit('registryStatus', { available: true, error: undefined });
  assert.deepEqual(seen, ['a:false', 'b:false', 'b:true']);
});

test('GatewayEvents: a subscriber that throws is reported once and cannot stop the others', async () => {
  const { GatewayEvents } = await import('../../src/session/events.js');
  const reported: string[] = [];
  const events = new GatewayEvents((error, name) => reported.push(`${name}: ${(error as Error).message}`));
  const seen: boolean[] = [];
  events.subscribe({
    registryStatus: () => {
      throw new Error('broken subscriber');
    },
  });
  events.subscribe({ registryStatus: (e) => seen.push(e.available) });
  events.emit('registryStatus', { available: false, error: undefined });
  events.emit('registryStatus', { available: true, error: undefined });
  assert.deepEqual(seen, [false, true]);
  assert.deepEqual(reported, ['registryStatus: broken subscriber']);
});

test('DENY_REASONS lists exactly the reasons the code emits', async () => {
  const { readdir, readFile } = await import('node:fs/promises');
  const { join } = await import('node:path');
  const root = new URL('../../src/', import.meta.url).pathname;
  const files: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.name.endsWith('.ts') && !path.endsWith('observability/events.ts')) files.push(path);
    }
  };
  await walk(root);
  const source = (await Promise.all(files.map((f) => readFile(f, 'utf8')))).join('\n');
  // Every reason the table names appears as a string literal somewhere it is emitted (the DenyReason type
  // makes the other direction a compile-time check: nothing can emit a reason the table lacks).
  for (const reason of DENY_REASON_KINDS) {
    assert.ok(source.includes(`'${reason}'`), `${reason} is listed in DENY_REASONS but never emitted`);
  }
});
