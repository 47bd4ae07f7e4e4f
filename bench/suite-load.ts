/**
 * Load generator of the side-by-side suite, run as its own process so that the client does not share
 * an event loop with the sink or the orchestrator. Reads one job (JSON) from argv[2], prints one JSON
 * result line. The `idle` job prints its result once every tunnel is open, then holds them until a
 * line arrives on stdin.
 */

import { readFileSync } from 'node:fs';
import { type ClientHttp2Session, type ClientHttp2Stream, connect as h2connect } from 'node:http2';
import type { Duplex } from 'node:stream';
import { createSecureContext, type SecureContext, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { type LoadJob, type LoadResult, type LoadTarget, MIB, pump, sinkHeader } from './suite-common.js';

const job = JSON.parse(process.argv[2] ?? '{}') as LoadJob;
const target: LoadTarget = job.target;
const context: SecureContext = createSecureContext({
  ca: readFileSync(target.caPath),
  cert: readFileSync(target.certPath),
  key: readFileSync(target.keyPath),
});
let latestSession: Buffer | undefined;
let resumedCount = 0;

function tlsOpen(alpn: string[] | undefined, resume: boolean): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: target.port,
      secureContext: context,
      servername: 'localhost',
      ...(alpn ? { ALPNProtocols: alpn } : {}),
      ...(resume && latestSession ? { session: latestSession } : {}),
    });
    socket.on('session', (s: Buffer) => {
      latestSession = s;
    });
    socket.once('secureConnect', () => {
      if (socket.isSessionReused()) resumedCount++;
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** Resolves once `n` bytes arrived (the first `k` byte for n = 1). */
function receive(stream: Duplex, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (c: Buffer): void => {
      got += c.length;
      if (got >= n) {
        stream.off('data', onData);
        resolve();
      }
    };
    stream.on('data', onData);
    stream.once('error', reject);
    stream.once('close', () => (got >= n ? resolve() : reject(new Error(`closed after ${got}/${n} bytes`))));
    stream.resume();
  });
}

/** HTTP/1.1 CONNECT over a new TLS connection; resolves paused, after `200`. */
async function h1Tunnel(resume: boolean): Promise<Duplex> {
  const socket = await tlsOpen(['http/1.1'], resume);
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(buffered.subarray(0, end).toString('latin1'))?.[1];
      if (status !== '200') {
        socket.destroy();
        reject(new Error(`CONNECT answered ${status}`));
        return;
      }
      if (end + 4 < buffered.length) socket.unshift(buffered.subarray(end + 4));
      resolve(socket);
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`CONNECT ${target.authority} HTTP/1.1\r\nHost: ${target.authority}\r\n\r\n`);
  });
}

function h2SessionOpen(): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`https://127.0.0.1:${target.port}`, {
      secureContext: context,
      servername: 'localhost',
      settings: { initialWindowSize: MIB },
    });
    session.once('connect', () => {
      session.setLocalWindowSize(16 * MIB);
      session.off('error', reject);
      resolve(session);
    });
    session.once('error', reject);
  });
}

function h2Tunnel(session: ClientHttp2Session): Promise<ClientHttp2Stream> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'CONNECT', ':authority': target.authority });
    stream.once('response', (headers) => {
      if (Number(headers[':status']) !== 200) reject(new Error(`CONNECT answered ${headers[':status']}`));
      else resolve(stream);
    });
    stream.once('error', reject);
  });
}

/** A tunnel to the sink on a new TLS connection (bare relay: TLS + the relay's port byte). */
async function newTunnel(resume: boolean): Promise<Duplex> {
  if (target.kind === 'bare') {
    const socket = await tlsOpen(undefined, resume);
    socket.write('u');
    return socket;
  }
  return h1Tunnel(resume);
}

/** Wall time (s) and this process's CPU (ms) while `work` runs. */
async function measure(work: () => Promise<void>): Promise<{ seconds: number; clientCpuMs: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await work();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { seconds, clientCpuMs: (cpu.user + cpu.system) / 1000 };
}

async function runPool(count: number, concurrency: number, one: () => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      await one();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

async function transfer(direction: 'up' | 'down', bytes: number, streams: number): Promise<LoadResult> {
  const session = target.kind === 'h2' ? await h2SessionOpen() : undefined;
  const tunnels: Duplex[] = [];
  for (let i = 0; i < streams; i++) tunnels.push(session ? await h2Tunnel(session) : await newTunnel(false));
  const { seconds, clientCpuMs } = await measure(async () => {
    await Promise.all(
      tunnels.map((t) => {
        t.write(sinkHeader(direction === 'up' ? 'u' : 'd', bytes));
        if (direction === 'up') {
          pump(t, bytes, () => {});
          return receive(t, 1);
        }
        return receive(t, bytes);
      }),
    );
  });
  for (const t of tunnels) t.destroy();
  session?.destroy();
  return { seconds, clientCpuMs };
}

/** One tunnel per new TLS connection: time from connect() to a usable tunnel (200; bare: sink's 'k'). */
async function openMany(count: number, concurrency: number, resume: boolean): Promise<LoadResult> {
  if (resume) (await newTunnel(false)).destroy(); // a first full handshake gives the ticket
  await new Promise((r) => setTimeout(r, 50));
  resumedCount = 0;
  const latencies: number[] = [];
  const { seconds, clientCpuMs } = await measure(async () => {
    await runPool(count, concurrency, async () => {
      const s = process.hrtime.bigint();
      const t = await newTunnel(resume);
      if (target.kind === 'bare') {
        t.write(sinkHeader('u', 0));
        await receive(t, 1);
      }
      latencies.push(Number(process.hrtime.bigint() - s) / 1e6);
      t.destroy();
    });
  });
  return {
    seconds,
    latencies,
    done: count,
    resumed: resumedCount,
    clientCpuMs,
  };
}

/** CONNECT→200 on one existing HTTP/2 connection; `concurrency` streams in flight. */
async function h2Open(count: number, concurrency: number): Promise<LoadResult> {
  const session = await h2SessionOpen();
  // Tunnels are closed the polite way (END_STREAM, the sink ends too): nghttp2 in the gateway ends a
  // session with INTERNAL_ERROR once a client has sent ~1,000 RST_STREAMs faster than 33/s.
  const done = (stream: ClientHttp2Stream): void => {
    stream.resume();
    stream.end();
  };
  for (let i = 0; i < 20; i++) done(await h2Tunnel(session)); // warm-up
  const latencies: number[] = [];
  const { seconds, clientCpuMs } = await measure(async () => {
    await runPool(count, concurrency, async () => {
      const s = process.hrtime.bigint();
      const stream = await h2Tunnel(session);
      latencies.push(Number(process.hrtime.bigint() - s) / 1e6);
      done(stream);
    });
  });
  session.destroy();
  return { seconds, latencies, done: count, clientCpuMs };
}

/**
 * Full (or resumed) mTLS handshakes. Each counts once the server's TLS 1.3 session ticket arrived: the
 * server sends it only after it checked the client's Finished (and CertificateVerify), so a handshake
 * is not counted before the server did all of its work. Then the connection is dropped.
 */
async function handshakes(count: number, concurrency: number, resume: boolean): Promise<LoadResult> {
  if (resume) {
    (await tlsOpen(['http/1.1'], false)).destroy();
    await new Promise((r) => setTimeout(r, 50));
  }
  resumedCount = 0;
  let noTicket = 0;
  const { seconds, clientCpuMs } = await measure(async () => {
    await runPool(count, concurrency, async () => {
      const s = await tlsOpen(target.kind === 'bare' ? undefined : ['http/1.1'], resume);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          noTicket++;
          resolve();
        }, 1000);
        s.once('session', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      s.destroy();
    });
  });
  if (noTicket > 0) process.stderr.write(`handshake job: ${noTicket} connections got no ticket within 1 s\n`);
  return { seconds, done: count, resumed: resumedCount, clientCpuMs };
}

async function idle(count: number, concurrency: number): Promise<void> {
  const held: Duplex[] = [];
  const sessions: ClientHttp2Session[] = [];
  const perSession = 200;
  const { seconds, clientCpuMs } = await measure(async () => {
    if (target.kind === 'h2') {
      for (let k = 0; k < Math.ceil(count / perSession); k++) sessions.push(await h2SessionOpen());
    }
    let opened = 0;
    await runPool(count, concurrency, async () => {
      const i = opened++;
      const session = sessions[Math.floor(i / perSession)];
      const t: Duplex = session ? await h2Tunnel(session) : await newTunnel(false);
      t.write(sinkHeader('u', 0));
      await receive(t, 1);
      held.push(t);
    });
  });
  const result: LoadResult = { seconds, done: held.length, clientCpuMs };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  for (const t of held) t.destroy();
  for (const s of sessions) s.destroy();
}

async function main(): Promise<void> {
  switch (job.op) {
    case 'transfer':
      return void process.stdout.write(
        `${JSON.stringify(await transfer(job.direction, job.bytes, job.streams))}\n`,
      );
    case 'open':
      return void process.stdout.write(
        `${JSON.stringify(await openMany(job.count, job.concurrency, job.resume))}\n`,
      );
    case 'h2open':
      return void process.stdout.write(`${JSON.stringify(await h2Open(job.count, job.concurrency))}\n`);
    case 'handshake':
      return void process.stdout.write(
        `${JSON.stringify(await handshakes(job.count, job.concurrency, job.resume))}\n`,
      );
    case 'idle':
      return idle(job.count, job.concurrency);
  }
}

const watchdog = setTimeout(
  () => {
    process.stderr.write(`load job ${job.op} timed out\n`);
    process.exit(3);
  },
  Number(process.env['BENCH_JOB_TIMEOUT_MS'] ?? 180_000),
);
watchdog.unref();
await main();
process.exit(0);
