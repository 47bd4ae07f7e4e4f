import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { CLI_NODE_FLAGS } from '../helpers/gateway-process.js';

/*
 * The CLI is launched four ways: its shebang (`./dist/cli/main.js`), bin/agent-gateway, `npm start`, and
 * the tests' and benchmarks' spawns. Each passes node flags (src/cli/main.ts says why); a launcher that
 * dropped one would open the inspector on SIGUSR1 or hold more memory per tunnel, unnoticed. They must
 * agree.
 */
const root = new URL('../../', import.meta.url);
const read = (path: string) => readFile(new URL(path, root), 'utf8');
const flagsIn = (command: string) => command.split(/\s+/).filter((word) => word.startsWith('--'));

test('the shebang, bin/agent-gateway, npm start and the test spawns pass the same node flags', async () => {
  assert.ok(CLI_NODE_FLAGS.length >= 2, 'the flag list is read');
  const shebang = (await read('src/cli/main.ts')).split('\n')[0] ?? '';
  assert.match(shebang, /^#!\/usr\/bin\/env -S node /);
  assert.deepEqual(flagsIn(shebang), CLI_NODE_FLAGS, 'src/cli/main.ts shebang');

  const exec = (await read('bin/agent-gateway')).split('\n').find((line) => line.startsWith('exec '));
  assert.ok(exec, 'bin/agent-gateway has an exec line');
  assert.deepEqual(flagsIn(exec.replace(/"\$@"/, '')), CLI_NODE_FLAGS, 'bin/agent-gateway');

  const start = (JSON.parse(await read('package.json')) as { scripts: Record<string, string> }).scripts[
    'start'
  ];
  assert.ok(start?.includes('dist/cli/main.js demo'), 'npm start runs the demo');
  assert.deepEqual(flagsIn(start ?? ''), CLI_NODE_FLAGS, 'npm start');
});
