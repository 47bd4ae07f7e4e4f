import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { run, runCli } from '../helpers/cli-runner.js';
import { CLI_ARGV } from '../helpers/gateway-process.js';

/**
 * `npm start` runs `agent-gateway demo`. Here the built CLI runs the demo with a state directory of its own,
 * the printed commands are run exactly as printed (through sh, as a user pastes them), and Ctrl-C (SIGINT)
 * must stop everything with exit code 0. A second run reuses the state.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const READY = 'Press Ctrl-C to stop.';
let scratch: string;
let stateDir: string;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'ag-demo-test-'));
  // As root, the embedded PostgreSQL runs as `postgres`, which must be able to enter the directory.
  await chmod(scratch, 0o755);
  stateDir = join(scratch, 'state');
});

after(async () => {
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

interface RunningDemo {
  readonly child: ChildProcess;
  readonly output: string;
  readonly exited: Promise<number | null>;
  stderr(): string;
}

/** Starts the demo and resolves once it printed its instructions (rejects if it exits first). */
function startDemo(dir = stateDir): Promise<RunningDemo> {
  const child = spawn(process.execPath, [...CLI_ARGV, 'demo', '--state-dir', dir], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.includes(READY)) resolve({ child, output: stdout, exited, stderr: () => stderr });
    });
    void exited.then((code) =>
      reject(new Error(`demo exited (${code}) before it was ready:\n${stdout}\n${stderr}`)),
    );
  });
}

function printedCommands(output: string) {
  const lines = output.split('\n');
  return {
    curls: lines.filter((l) => l.startsWith('curl ')),
    h2: lines.find((l) => l.startsWith('node ') && l.includes('h2-get')),
  };
}

const sh = (line: string) => run('sh', ['-c', line], { cwd: ROOT, env: process.env });

async function stopWithCtrlC(demo: RunningDemo, dir = stateDir): Promise<void> {
  demo.child.kill('SIGINT');
  assert.equal(await demo.exited, 0, `demo exit code after SIGINT; stderr: ${demo.stderr()}`);
  assert.equal(existsSync(join(dir, 'pgdata', 'postmaster.pid')), false, 'PostgreSQL stopped too');
}

/**
 * The printed dashboard URL answers, refuses the API without a login, and the printed admin token logs in
 * to a dashboard that watches the demo's gateway (it saw the tunnels just made).
 */
async function dashboardLogsIn(output: string): Promise<void> {
  const url = /^ {2}dashboard +(http:\/\/127\.0\.0\.1:\d+)\//m.exec(output)?.[1];
  const token = /log in with the admin token +([0-9a-f]{32})$/m.exec(output)?.[1];
  assert.ok(
    url !== undefined && token !== undefined,
    `the dashboard's URL and login are printed:\n${output}`,
  );
  assert.equal((await fetch(`${url}/api/state`)).status, 401);
  const login = await fetch(`${url}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: url },
    body: new URLSearchParams({ token, name: 'demo-test' }).toString(),
  });
  assert.equal(login.status, 303);
  const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
  // Its stream to the gateway opens within moments of the start; bounded wait.
  let gateways: Array<[string, boolean]> = [];
  for (let i = 0; i < 50; i++) {
    const state = (await (await fetch(`${url}/api/state`, { headers: { cookie } })).json()) as {
      gateways: Array<{ gateway: string; connected: boolean }>;
    };
    gateways = state.gateways.map((g) => [g.gateway, g.connected]);
    if (gateways.every(([, connected]) => connected)) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.deepEqual(gateways, [['demo-gateway', true]]);
}

test('the demo prints a curl that succeeds and one that gets 403, stops on Ctrl-C, and reuses its state', {
  timeout: 300_000,
}, async () => {
  const first = await startDemo();
  const { curls, h2 } = printedCommands(first.output);
  assert.equal(curls.length, 2, first.output);
  const [allowedLine = '', refusedLine = ''] = curls;

  const allowed = await sh(allowedLine);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.match(
    allowed.stdout,
    /hello from the agent-gateway demo destination: GET \/ reached me through the gateway/,
  );

  const refused = await sh(refusedLine);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /CONNECT tunnel failed, response 403/);

  assert.ok(h2, `an HTTP/2 command is printed:\n${first.output}`);
  const overH2 = await sh(`${h2} --streams 3`);
  assert.equal(overH2.code, 0, overH2.stderr);
  assert.equal(overH2.stderr.match(/HTTP\/2 CONNECT 127\.0\.0\.1:\d+ -> 200/g)?.length, 3);
  assert.equal(overH2.stdout.match(/reached me through the gateway/g)?.length, 3);

  await dashboardLogsIn(first.output);

  const logPath = join(stateDir, 'gateway.log');
  assert.match(first.output, /gateway\.log/);
  await stopWithCtrlC(first);
  const log = await readFile(logPath, 'utf8');
  assert.match(log, /"msg":"CONNECT allowed"/);
  assert.match(log, /"deny_reason":"no_matching_permission".*"msg":"CONNECT denied"/);

  // Second run: nothing is created or granted again, the same commands work.
  const second = await startDemo();
  assert.doesNotMatch(second.output, /setup:|demo: created/);
  assert.match(second.output, /reusing/);
  const again = printedCommands(second.output);
  assert.deepEqual(again.curls, curls, 'same ports, same files: the printed commands stay valid');
  const allowedAgain = await sh(again.curls[0] ?? '');
  assert.equal(allowedAgain.code, 0, allowedAgain.stderr);
  await stopWithCtrlC(second);
});

test('the demo runs from a state directory the postgres OS user cannot enter, and cleans up after itself', {
  timeout: 300_000,
}, async () => {
  // A mode-700 directory, like root's home with the clone in it. As root the database must move out of it.
  const hidden = await mkdtemp(join(tmpdir(), 'ag-demo-private-'));
  const dir = join(hidden, 'state');
  try {
    const demo = await startDemo(dir);
    const [allowedLine = ''] = printedCommands(demo.output).curls;
    const allowed = await sh(allowedLine);
    assert.equal(allowed.code, 0, allowed.stderr);
    assert.match(allowed.stdout, /reached me through the gateway/);
    const moved = /so the database lives in (\S+) instead/.exec(demo.output)?.[1];
    if (process.getuid?.() === 0) {
      assert.ok(moved !== undefined, `the demo says where the database went:\n${demo.output}`);
      assert.ok(existsSync(moved));
      assert.ok(demo.output.includes(`data in ${moved} (deleted when the demo stops)`), demo.output);
    } else {
      assert.equal(moved, undefined, 'as its own user nothing needs to move');
    }
    await stopWithCtrlC(demo, dir);
    if (moved !== undefined)
      assert.equal(existsSync(dirname(moved)), false, 'the private directory is removed');
  } finally {
    await rm(hidden, { recursive: true, force: true });
  }
});

test('the demo refuses a bad --port with exit code 2', async () => {
  const r = await runCli(['demo', '--state-dir', join(scratch, 'unused'), '--port', '70000']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--port "70000" must be a port number/);
});
