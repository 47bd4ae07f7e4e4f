/**
 * Squid as an mTLS CONNECT proxy for the suite: Debian's `squid-openssl` (installed with apt-get when
 * missing), one worker, run in the foreground (`-N`) as a child process with everything in a temp dir.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmod, copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SquidProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly version: string;
  stop(): Promise<void>;
}

const SQUID = '/usr/sbin/squid';

/** `squid -v` first line, installing squid-openssl with apt-get when squid is missing. */
export async function ensureSquid(): Promise<string> {
  try {
    return (await run(SQUID, ['-v'])).stdout.split('\n')[0] ?? '';
  } catch {
    process.stderr.write('squid missing: apt-get install squid-openssl\n');
    await run('apt-get', ['update', '-qq'], { timeout: 300_000 });
    await run('apt-get', ['install', '-y', '-qq', 'squid-openssl'], {
      timeout: 600_000,
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    return (await run(SQUID, ['-v'])).stdout.split('\n')[0] ?? '';
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface SquidInput {
  readonly port: number;
  readonly sinkPort: number;
  readonly certPath: string;
  readonly keyPath: string;
  /** The CA that signs the agent certificates: clients must present a certificate it verifies. */
  readonly clientCaPath: string;
}

export async function startSquid(input: SquidInput): Promise<SquidProcess> {
  const version = await ensureSquid();
  const dir = await mkdtemp(join(tmpdir(), 'agent-gateway-squid-'));
  // Run as root, squid drops to the `proxy` user, which must write its log and pid file here.
  await chmod(dir, 0o777);
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const ca = join(dir, 'clientca.pem');
  await copyFile(input.certPath, cert);
  await copyFile(input.keyPath, key);
  await copyFile(input.clientCaPath, ca);
  for (const f of [cert, key, ca]) await chmod(f, 0o644);
  const conf = join(dir, 'squid.conf');
  await writeFile(
    conf,
    [
      `https_port 127.0.0.1:${input.port} tls-cert=${cert} tls-key=${key} clientca=${ca} tls-cafile=${ca} sslcontext=agentgwbench`,
      'acl CONNECT method CONNECT',
      `acl sink_port port ${input.sinkPort}`,
      'acl sink_dst dst 127.0.0.1',
      'http_access allow CONNECT sink_port sink_dst',
      'http_access deny all',
      'workers 1',
      'cache deny all',
      'cache_mem 8 MB',
      'access_log none',
      'cache_store_log none',
      `cache_log ${join(dir, 'cache.log')}`,
      'debug_options ALL,0',
      `pid_filename ${join(dir, 'squid.pid')}`,
      `coredump_dir ${dir}`,
      'netdb_filename none',
      'pinger_enable off',
      'max_filedescriptors 16384',
      'shutdown_lifetime 0 seconds',
      'visible_hostname bench-squid',
      '',
    ].join('\n'),
  );
  const child = spawn(SQUID, ['-N', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
  });
  const deadline = Date.now() + 20_000;
  while (!(await portOpen(input.port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`squid did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    child,
    port: input.port,
    version,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
