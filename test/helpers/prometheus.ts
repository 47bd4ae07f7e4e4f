import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { closedPort } from './loopback-servers.js';

/** Debian's prometheus package; .ci/run installs it. */
export const PROMETHEUS = '/usr/bin/prometheus';

export interface PrometheusSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface PrometheusServer {
  readonly url: string;
  /** An instant query through the HTTP API (`/api/v1/query`). */
  query(expr: string): Promise<PrometheusSample[]>;
  /** Re-runs `expr` every 500 ms (at most `tries` times) until `accept` holds; returns the last result. */
  waitFor(
    expr: string,
    accept: (samples: PrometheusSample[]) => boolean,
    tries?: number,
  ): Promise<PrometheusSample[]>;
  stop(): Promise<void>;
}

/**
 * The real Prometheus server scraping one target every second, with a config and data directory of its
 * own under `dir`, listening on a loopback port; the bearer token is read from `tokenFile` as a
 * production scrape config would (`authorization.credentials_file`).
 */
export async function startPrometheus(opts: {
  readonly dir: string;
  readonly target: string;
  readonly tokenFile: string;
}): Promise<PrometheusServer> {
  if (!existsSync(PROMETHEUS)) {
    throw new Error(`${PROMETHEUS} is missing: apt-get install prometheus (.ci/run installs it)`);
  }
  await mkdir(join(opts.dir, 'data'), { recursive: true });
  const config = join(opts.dir, 'prometheus.yml');
  await writeFile(
    config,
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: agent_gateway',
      '    metrics_path: /metrics',
      '    authorization:',
      '      type: Bearer',
      `      credentials_file: ${JSON.stringify(opts.tokenFile)}`,
      '    static_configs:',
      `      - targets: [${JSON.stringify(opts.target)}]`,
      '',
    ].join('\n'),
  );
  // Free now; Prometheus binds it a moment later (the usual small race of a test port).
  const port = await closedPort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(opts.dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (t: string) => {
    stderr += t;
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    await until(async () => (await fetch(`${url}/-/ready`)).status === 200, 120, 250);
  } catch (error) {
    await stop();
    throw new Error(`prometheus did not become ready: ${(error as Error).message}; stderr: ${stderr}`);
  }
  const query = async (expr: string): Promise<PrometheusSample[]> => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as {
      status: string;
      error?: string;
      data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
    };
    if (body.status !== 'success') throw new Error(`query ${expr} failed: ${body.error}`);
    return (body.data?.result ?? []).map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  };
  return {
    url,
    query,
    async waitFor(expr, accept, tries = 60) {
      let last: PrometheusSample[] = [];
      for (let i = 0; i < tries; i++) {
        last = await query(expr);
        if (accept(last)) return last;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      throw new Error(`prometheus: ${expr} never matched; last ${JSON.stringify(last)}`);
    },
    stop,
  };
}

async function until(check: () => Promise<boolean>, tries: number, everyMs: number): Promise<void> {
  let lastError: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
  throw new Error(`not ready after ${tries} tries (${(lastError as Error)?.message ?? 'no answer'})`);
}
