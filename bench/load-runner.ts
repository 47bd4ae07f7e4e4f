/** Runs a load job of bench/suite-load.ts in a process of its own, shared by the suite and bench/budgets.ts. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { LoadJob, LoadResult } from './suite-common.js';

const LOAD = fileURLToPath(new URL('./suite-load.ts', import.meta.url));

/** Runs one job in a new load-generator process; for `idle`, `whileOpen` runs with the tunnels held. */
export async function runLoad(job: LoadJob, whileOpen?: () => Promise<void>): Promise<LoadResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', LOAD, JSON.stringify(job)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  // A job other than `idle` exits after its result line: the 'close' below may then hit a closed pipe.
  child.stdin!.on('error', () => {});
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl));
    });
    void exited.then((code) => reject(new Error(`load job ${job.op}/${job.target.kind} exited ${code}`)));
  });
  const result = JSON.parse(line) as LoadResult;
  if (whileOpen) await whileOpen();
  child.stdin!.end('close\n');
  await exited;
  return result;
}
