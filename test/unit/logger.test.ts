import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { createLogger, flushLogger } from '../../src/observability/logger.js';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk));
      callback();
    },
  });
  const lines = () =>
    chunks
      .join('')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { stream, lines };
}

describe('createLogger', () => {
  test('writes one JSON object per line with the event name in msg', () => {
    const { stream, lines } = capture();
    const logger = createLogger('info', stream);
    logger.info({ dest_authority: 'api.example.com:443', policy_decision: 'allow' }, 'CONNECT allowed');
    const [line, ...rest] = lines();
    assert.equal(rest.length, 0);
    assert.ok(line !== undefined);
    assert.equal(line['msg'], 'CONNECT allowed');
    assert.equal(line['level'], 'info');
    assert.equal(line['service'], 'agent-gateway');
    assert.equal(line['dest_authority'], 'api.example.com:443');
    assert.equal(typeof line['time'], 'string');
    assert.ok(!Number.isNaN(Date.parse(line['time'] as string)));
    assert.equal('pid' in line, false);
    assert.equal('hostname' in line, false);
  });

  test('drops lines below the configured level', () => {
    const { stream, lines } = capture();
    const logger = createLogger('warn', stream);
    logger.info('shutdown started');
    logger.error('policy database unavailable');
    assert.deepEqual(
      lines().map((l) => l['msg']),
      ['policy database unavailable'],
    );
  });

  test('refuses an unknown level by name', () => {
    assert.throws(() => createLogger('verbose', capture().stream), /unknown log level "verbose"/);
  });
});

describe('flushLogger', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agw-logger-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('resolves after every line reached an asynchronous file destination', async () => {
    const file = join(dir, 'log.jsonl');
    const logger = createLogger('info', pino.destination({ dest: file, sync: false }));
    for (let i = 0; i < 2000; i++) logger.info({ i }, 'tunnel closed');
    await flushLogger(logger);
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
    assert.equal(lines.length, 2000);
    assert.equal((JSON.parse(lines[1999] ?? '{}') as { i?: number }).i, 1999);
  });

  test('resolves for a child logger and a plain Writable', async () => {
    const { stream, lines } = capture();
    const child = createLogger('info', stream).child({ conn: 1 });
    child.info('listening');
    await flushLogger(child);
    assert.equal(lines()[0]?.['conn'], 1);
  });
});
