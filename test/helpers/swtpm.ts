// A software TPM for one test file, reached as a PKCS#11 token through tpm2-pkcs11: swtpm (the TPM), a
// private D-Bus session bus, tpm2-abrmd (the resource manager: without it tpm2-pkcs11 leaves transient
// objects behind and the TPM runs out of object memory), and a tpm2-pkcs11 store in a temporary directory.
// Every process is a child of the test, stopped by its pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { run } from './cli-runner.js';
import { closedPort } from './loopback-servers.js';

/** Debian's libtpm2-pkcs11-1. */
export const TPM2_PKCS11_MODULE = '/usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so';
const TOOLS = ['swtpm', 'dbus-daemon', 'tpm2-abrmd', 'tpm2_ptool', 'tpm2_getcap'];
const READY_TIMEOUT_MS = 15_000;

export interface SoftwareTpm {
  readonly dir: string;
  /** The environment tpm2-pkcs11 needs in the processes under test, and the module for the CLI. */
  readonly env: Record<string, string>;
  /** A tpm2-pkcs11 token (`tpm2_ptool addtoken`) with this label and user PIN. */
  addToken(label: string, userPin: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startSoftwareTpm(): Promise<SoftwareTpm> {
  const missing = [];
  for (const tool of TOOLS)
    if ((await run('sh', ['-c', `command -v ${tool}`])).code !== 0) missing.push(tool);
  if (missing.length > 0 || !existsSync(TPM2_PKCS11_MODULE)) {
    throw new Error(
      `missing ${[...missing, ...(existsSync(TPM2_PKCS11_MODULE) ? [] : [TPM2_PKCS11_MODULE])].join(', ')}: ` +
        'apt-get install swtpm tpm2-abrmd libtss2-tcti-tabrmd0 libtpm2-pkcs11-1 libtpm2-pkcs11-tools tpm2-tools dbus (.ci/run does)',
    );
  }
  const dir = await mkdtemp(join(tmpdir(), 'agent-gateway-swtpm-'));
  const children: ChildProcess[] = [];
  const stop = async () => {
    for (const child of children.reverse()) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('close', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const state = join(dir, 'state');
    const store = join(dir, 'store');
    await mkdir(state);
    await mkdir(store);
    // The swtpm TCTI finds the control channel at port + 1.
    const port = await portPair();
    children.push(
      spawnQuiet('swtpm', [
        ...['socket', '--tpm2', '--tpmstate', `dir=${state}`, '--flags', 'not-need-init,startup-clear'],
        ...[
          '--server',
          `type=tcp,port=${port},bindaddr=127.0.0.1`,
          '--ctrl',
          `type=tcp,port=${port + 1},bindaddr=127.0.0.1`,
        ],
      ]),
    );
    const bus = `unix:path=${join(dir, 'bus')}`;
    children.push(spawnQuiet('dbus-daemon', ['--session', '--nofork', `--address=${bus}`]));
    const env = {
      DBUS_SESSION_BUS_ADDRESS: bus,
      TPM2TOOLS_TCTI: 'tabrmd:bus_type=session',
      TPM2_PKCS11_TCTI: 'tabrmd:bus_type=session',
      TPM2_PKCS11_STORE: store,
      AGENT_GATEWAY_PKCS11_MODULE: TPM2_PKCS11_MODULE,
    };
    await waitFor(async () => existsSync(join(dir, 'bus')), 'the D-Bus session bus');
    await waitFor(() => accepts(port), 'swtpm');
    children.push(
      spawnQuiet(
        'tpm2-abrmd',
        ['--allow-root', '--session', `--tcti=swtpm:host=127.0.0.1,port=${port}`],
        env,
      ),
    );
    const withEnv = { env: { ...process.env, ...env } };
    await waitFor(
      async () => (await run('tpm2_getcap', ['properties-fixed'], withEnv)).code === 0,
      'tpm2-abrmd talking to swtpm',
    );
    const tool = async (args: string[]) => {
      const r = await run('tpm2_ptool', args, withEnv);
      if (r.code !== 0) throw new Error(`tpm2_ptool ${args[0]} failed: ${r.stderr}${r.stdout}`);
    };
    await tool(['init', '--path', store]);
    return {
      dir,
      env,
      addToken: (label, userPin) =>
        tool([
          ...['addtoken', '--pid=1', `--label=${label}`, '--sopin=so-pin-of-the-test'],
          ...[`--userpin=${userPin}`, '--path', store],
        ]),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

function spawnQuiet(file: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(file, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr = (stderr + text).slice(-4000);
  });
  child.once('close', (code, signal) => {
    if (signal === null && code !== 0) process.stderr.write(`${file} exited ${code}: ${stderr}\n`);
  });
  return child;
}

/** A loopback port P with P and P + 1 free. */
async function portPair(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await closedPort();
    if (port < 65535 && (await isFree(port + 1))) return port;
  }
  throw new Error('no two adjacent free loopback ports for swtpm');
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitFor(ready: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${READY_TIMEOUT_MS} ms`);
    await delay(50);
  }
}
