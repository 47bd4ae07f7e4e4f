import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { packageVersion } from '../../src/version.js';
import { runCli } from '../helpers/cli-runner.js';

/** `agent-gateway --version` prints the version of the package that runs, from its package.json. */

const manifest = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

test('packageVersion() is the version in package.json', () => {
  assert.match(manifest.version, /^\d+\.\d+\.\d+/);
  assert.equal(packageVersion(), manifest.version);
});

test('--version and -V print the package version and exit 0', async () => {
  for (const flag of ['--version', '-V']) {
    const r = await runCli([flag]);
    assert.equal(r.code, 0, `${flag}: ${r.stderr}`);
    assert.equal(r.stdout, `${manifest.version}\n`);
    assert.equal(r.stderr, '');
  }
});
