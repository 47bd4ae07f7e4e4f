/**
 * Test runner: `node --import tsx scripts/run-tests.ts [test files…]`.
 *
 * - Node 20's `node --test` neither expands globs nor finds .ts files (a bare run passes with 0 tests), so
 *   this script lists test/**\/*.test.ts itself and fails a run that executed no tests.
 * - Without TEST_DATABASE_URL it starts an embedded PostgreSQL in a fresh temporary directory for the
 *   run and deletes it afterwards, also on Ctrl-C or failure; test files create their own databases on it.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from '../src/devdb/embedded.js';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));

async function listTests(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await listTests(path)));
    else if (entry.isFile() && /\.test\.tsx?$/.test(entry.name)) found.push(path);
  }
  return found.sort();
}

/** Hides the password when printing a database URL. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/**
 * Counts from the TAP copy of the results. Node reports a file that registered no tests as a single
 * top-level test named after the file; those are not tests, and such files are listed in `empty`.
 */
function summary(tap: string, files: string[]): { tests: number; fail: number; empty: string[] } | undefined {
  const tests = /^# tests (\d+)$/m.exec(tap);
  const fail = /^# fail (\d+)$/m.exec(tap);
  if (tests?.[1] === undefined || fail?.[1] === undefined) return undefined;
  const fileSet = new Set(files);
  const empty: string[] = [];
  for (const m of tap.matchAll(/^(?:not )?ok \d+ - (.+)$/gm)) {
    const name = m[1] === undefined ? '' : resolve(root, m[1]);
    if (fileSet.has(name)) empty.push(relative(root, name));
  }
  return { tests: Number(tests[1]) - empty.length, fail: Number(fail[1]), empty };
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  // test/: the gateway, the CLI and the dashboard's server and browser tests; web/test: the front end's own.
  const files =
    args.length > 0
      ? args.map((f) => resolve(f))
      : [...(await listTests(join(root, 'test'))), ...(await listTests(join(root, 'web', 'test')))];
  if (files.length === 0) {
    process.stderr.write(
      'run-tests: no test files found (expected test/**/*.test.ts or web/test/**/*.test.ts)\n',
    );
    return 1;
  }

  // Private to this user: as root, the embedded server's data goes where its `postgres` user can reach it
  // (devdb/embedded.ts), not necessarily in here.
  const scratch = await mkdtemp(join(tmpdir(), 'agent-gateway-tests-'));
  let stopDatabase: (() => Promise<void>) | undefined;
  let child: ReturnType<typeof spawn> | undefined;
  let interrupted: NodeJS.Signals | undefined;

  const cleanup = async () => {
    await stopDatabase?.().catch((err: unknown) => {
      process.stderr.write(`run-tests: stopping embedded PostgreSQL failed: ${String(err)}\n`);
    });
    await rm(scratch, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = signal;
    // The children usually got the same signal from the terminal; this covers `kill <runner pid>`.
    if (child !== undefined && child.exitCode === null) child.kill(signal);
    else void cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    const env = { ...process.env };
    if (env['TEST_DATABASE_URL']) {
      process.stdout.write(`run-tests: database TEST_DATABASE_URL=${redact(env['TEST_DATABASE_URL'])}\n`);
    } else {
      const pg = await startEmbeddedPostgres({ dataDir: join(scratch, 'pgdata'), persistent: false });
      stopDatabase = pg.stop;
      env['TEST_DATABASE_URL'] = pg.url;
      process.stdout.write(
        `run-tests: database embedded PostgreSQL at ${redact(pg.url)} (TEST_DATABASE_URL unset)\n`,
      );
    }
    if (interrupted !== undefined) return 130;

    const tapFile = join(scratch, 'results.tap');
    const nodeArgs = [
      '--import',
      'tsx',
      '--test',
      '--test-concurrency=2',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      // A second, machine-readable copy of the results, to count the tests that actually ran.
      '--test-reporter=tap',
      `--test-reporter-destination=${tapFile}`,
      ...files.map((f) => relative(root, f)),
    ];
    process.stdout.write(`run-tests: ${files.length} test file(s)\n`);
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done, fail) => {
      child = spawn(process.execPath, nodeArgs, { cwd: root, env, stdio: 'inherit' });
      child.once('error', fail);
      child.once('exit', (code, signal) => done({ code, signal }));
    });

    if (interrupted !== undefined) return interrupted === 'SIGINT' ? 130 : 143;
    const counts = summary(await readFile(tapFile, 'utf8').catch(() => ''), files);
    if (counts === undefined) {
      process.stderr.write('run-tests: FAILED: the test run produced no summary (did it crash?)\n');
      return 1;
    }
    if (counts.tests <= 0) {
      process.stderr.write('run-tests: FAILED: zero tests ran\n');
      return 1;
    }
    if (counts.empty.length > 0) {
      // A file that registers no tests usually means tests that silently stopped running.
      process.stderr.write(`run-tests: FAILED: no tests ran in ${counts.empty.join(', ')}\n`);
      return 1;
    }
    if (exit.code !== 0 || counts.fail > 0) {
      process.stderr.write(
        `run-tests: FAILED: ${counts.fail} of ${counts.tests} tests failed` +
          ` (exit ${exit.code ?? exit.signal})\n`,
      );
      return 1;
    }
    process.stdout.write(`run-tests: ${counts.tests} tests passed\n`);
    return 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`run-tests: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
