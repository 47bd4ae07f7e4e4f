import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';

const LOGGER = new URL('../../src/observability/logger.ts', import.meta.url).href;

/** Runs `body` in a child process with the default (stdout) logger as `logger`; returns its output. */
function runChild(body: string): { stdout: string; status: number | null } {
  const script = `import { createLogger } from ${JSON.stringify(LOGGER)};\nconst logger = createLogger('info');\n${body}`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { stdout: r.stdout, status: r.status };
}

const messages = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { msg?: string }).msg);

describe('the stdout logger at process exit', () => {
  test('lines of the last turn are written when the process exits at once', () => {
    const { stdout, status } = runChild(
      "logger.info('tunnel closed'); logger.child({ c: 1 }).info('CONNECT allowed'); process.exit(3);",
    );
    assert.equal(status, 3);
    assert.deepEqual(messages(stdout), ['tunnel closed', 'CONNECT allowed']);
  });

  test('and when an uncaught error ends it', () => {
    const { stdout, status } = runChild("logger.info('CONNECT denied'); throw new Error('boom');");
    assert.equal(status, 1);
    assert.deepEqual(messages(stdout), ['CONNECT denied']);
  });

  test('two default loggers share one stdout writer, in order', () => {
    const { stdout } = runChild(
      "const other = createLogger('info'); logger.info('one'); other.info('two'); logger.info('three');",
    );
    assert.deepEqual(messages(stdout), ['one', 'two', 'three']);
  });
});
