import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import postgres from 'postgres';
import { type PostgresBinaries, packageBinaries } from '../../src/devdb/binaries.js';
import { startEmbeddedPostgres } from '../../src/devdb/embedded.js';

/**
 * A clone in a directory the `postgres` OS user cannot enter (root's mode-700 home, say), as root: the
 * embedded server must still start, from binaries and a data directory it can reach, and leave nothing
 * behind. Here the binaries are a copy inside a mode-700 directory (hard links, as `cp -al` makes them)
 * and the data directory is asked for inside it too. Run as another user, nothing needs to move, and the
 * same server must start in place.
 */

const run = promisify(execFile);
const asRoot = process.getuid?.() === 0;
let hidden: string;
let scratchRoot: string;
let binaries: PostgresBinaries;

before(async () => {
  hidden = await mkdtemp(join(tmpdir(), 'ag-private-clone-')); // mode 700, owned by this user
  scratchRoot = await mkdtemp(join(tmpdir(), 'ag-scratch-root-'));
  if (asRoot) await run('chmod', ['755', scratchRoot]);
  const installed = await packageBinaries();
  const copy = join(hidden, 'node_modules', 'native');
  await run('mkdir', ['-p', join(hidden, 'node_modules')]);
  await run('cp', ['-al', installed.root, copy]);
  binaries = { root: copy, initdb: join(copy, 'bin', 'initdb'), postgres: join(copy, 'bin', 'postgres') };
});

after(async () => {
  await rm(hidden, { recursive: true, force: true });
  await rm(scratchRoot, { recursive: true, force: true });
});

test('starts from binaries and a data directory in a mode-700 directory, and removes what it moved', async () => {
  const wanted = join(hidden, 'state', 'pgdata');
  const pg = await startEmbeddedPostgres({
    dataDir: wanted,
    persistent: true,
    binaries,
    scratchRoots: [scratchRoot],
  });
  try {
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    const [row] = await sql<{ one: number }[]>`SELECT 1 AS one`;
    await sql.end();
    assert.equal(row?.one, 1);
    if (asRoot) {
      assert.notEqual(pg.dataDir, wanted, 'the data moved where the postgres user can reach it');
      assert.ok(pg.dataDir.startsWith(scratchRoot));
      assert.equal(pg.persistent, false);
      assert.match(
        pg.note ?? '',
        /the postgres OS user cannot reach the PostgreSQL binaries in .*ag-private-clone-/,
      );
      assert.match(
        pg.note ?? '',
        /cannot enter .*ag-private-clone-\S* \(mode 700\), so the database lives in/,
      );
    } else {
      assert.equal(pg.dataDir, wanted, 'as its own user the server reaches the directory');
      assert.equal(pg.persistent, true);
      assert.equal(pg.note, undefined);
    }
  } finally {
    await pg.stop();
  }
  assert.deepEqual(await readdir(scratchRoot), [], 'the private directory (binaries, data) is gone');
  assert.equal(
    existsSync(join(wanted, 'PG_VERSION')),
    !asRoot,
    'in-place data persists; moved data does not',
  );
});
