import { execFile } from 'node:child_process';
import { CLI_ARGV } from './gateway-process.js';

/** The built CLI run as a user runs it (async: a synchronous child would block a server in this process). */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(
  args: readonly string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string } = {},
): Promise<CliResult> {
  // The runner's own database variable must not leak into commands that are meant to go without one.
  const { AGENT_GATEWAY_DATABASE_URL: _ignored, ...inherited } = process.env;
  return run(process.execPath, [...CLI_ARGV, ...args], { env: { ...inherited, ...opts.env }, cwd: opts.cwd });
}

/** Any program, resolving with its exit code and output instead of rejecting on a non-zero exit. */
export function run(
  file: string,
  args: readonly string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { encoding: 'utf8', env: opts.env as NodeJS.ProcessEnv, cwd: opts.cwd, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          reject(err);
          return;
        }
        resolve({ code: typeof err?.code === 'number' ? err.code : 0, stdout, stderr });
      },
    );
  });
}

/** `name: value` lines (the CLI's single-result output) as an object. */
export function fields(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const m = /^([a-z][a-z ]*):\s+(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

export interface ProxyTls {
  readonly caPath: string;
  readonly certPath: string;
  readonly keyPath: string;
}

/** curl through the gateway as an agent (HTTP/1.1 CONNECT); stdout ends with the CONNECT status. */
export function curlThroughGateway(gatewayPort: number, tls: ProxyTls, url: string): Promise<CliResult> {
  return run('curl', [
    '-sS',
    '--max-time',
    '20',
    '--proxy',
    `https://127.0.0.1:${gatewayPort}`,
    '--proxy-cacert',
    tls.caPath,
    '--proxy-cert',
    tls.certPath,
    '--proxy-key',
    tls.keyPath,
    '-p',
    '-w',
    '\n%{http_connect}',
    url,
  ]);
}
