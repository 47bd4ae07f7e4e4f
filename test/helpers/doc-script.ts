import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

/*
 * Running a document's shell block as written (the README's walkthrough, docs/HARDWARE-KEYS.md's): the
 * block is taken from the document itself, and only what must differ on a shared test machine is
 * replaced, each replacement checked to match.
 */

/** The first ```sh block after `heading` (a line of the document that introduces it). */
export function shBlockAfter(document: string, heading: string): string {
  const start = document.indexOf(heading);
  assert.ok(start >= 0, `the document has ${JSON.stringify(heading)}`);
  const open = document.indexOf('```sh\n', start) + '```sh\n'.length;
  return document.slice(open, document.indexOf('\n```\n', open) + 1);
}

/** Replaces `from` (a string exactly once, a regular expression at least once), or fails naming it. */
export function replaceOnce(script: string, from: string | RegExp, to: string): string {
  const matches =
    typeof from === 'string' ? script.split(from).length - 1 : (script.match(from) ?? []).length;
  assert.ok(matches >= 1, `the walkthrough no longer contains ${String(from)}: update this test with it`);
  if (typeof from === 'string') assert.equal(matches, 1, `${from} appears ${matches} times`);
  return script.replace(from, to);
}

/**
 * bash (as a user's interactive shell would run the lines) in its own process group, so that the
 * background web server and gateway are stopped even if the walkthrough fails half way.
 */
export function runShell(
  script: string,
  options: { cwd: string; env: Record<string, string> },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      output += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      output += c;
    });
    const timer = setTimeout(() => {
      output += '\n(test: walkthrough still running after 120 s, killed)';
      killGroup(child.pid);
    }, 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      // Anything the script left running in its group (it ends its own background jobs when it succeeds).
      killGroup(child.pid);
      resolve({ code, output });
    });
  });
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGTERM');
  } catch {
    // The group is already gone.
  }
}
