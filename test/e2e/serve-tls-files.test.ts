import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runCli } from '../helpers/cli-runner.js';
import { type ServerTlsFiles, writeServerTlsFiles } from '../helpers/tls-files.js';

/**
 * `serve` refuses a certificate and key that do not go together the way `check-config` does: exit 2 with
 * the file and the fix named, before any database connection (none is configured to answer here).
 */

let dir: string;
let tls: ServerTlsFiles;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ag-serve-tls-'));
  tls = await writeServerTlsFiles(dir);
});
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function config(name: string, certPath: string, keyPath: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(
    path,
    `[server]\nlisten_addr = "127.0.0.1:0"\ntls_cert_path = ${JSON.stringify(certPath)}\n` +
      `tls_key_path = ${JSON.stringify(keyPath)}\n[policy]\ndatabase_url = "postgres://127.0.0.1:1/none"\n`,
  );
  return path;
}

for (const command of ['serve', 'check-config']) {
  test(`${command}: a key that is not the certificate's exits 2 naming the key file and the fix`, async () => {
    const r = await runCli([
      command,
      '--config',
      await config(`${command}-foreign.toml`, tls.certPath, tls.foreignKeyPath),
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /server\.tls_key_path: ".*foreign-key\.pem" is not the private key of the certificate/,
    );
    assert.doesNotMatch(r.stderr, /key values mismatch/);
  });

  test(`${command}: swapped certificate and key paths exit 2 and say so`, async () => {
    const r = await runCli([
      command,
      '--config',
      await config(`${command}-swapped.toml`, tls.keyPath, tls.certPath),
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /server\.tls_cert_path and server\.tls_key_path are swapped/);
    assert.doesNotMatch(r.stderr, /no start line/);
  });
}
