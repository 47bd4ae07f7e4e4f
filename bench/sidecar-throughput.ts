/**
 * Throughput of one tunnel, loopback only: through sidecar + gateway (client → plain CONNECT → sidecar
 * → HTTP/2 stream over mTLS → gateway → sink) compared with going to the gateway directly over
 * HTTP/1.1 (client → TLS CONNECT → gateway → sink) and, for reference, directly over HTTP/2.
 *
 *   TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
 *     node --import tsx bench/sidecar-throughput.ts [MiB per direction, default 128] [rounds, default 3]
 *
 * Without TEST_DATABASE_URL an embedded PostgreSQL is started. Needs a build (dist/cli/main.js). The
 * sink counts instead of hashing so that the numbers measure the relays, not SHA-256. Each round sends
 * the amount up, then the sink sends the same amount down; rounds interleave the paths and the median
 * of the rounds is printed.
 */

import { readFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { h2Connect, h2Session, http1Connect } from '../test/helpers/clients.js';
import { freshDatabase } from '../test/helpers/db.js';
import { writePattern } from '../test/helpers/loopback-servers.js';
import { createTestPki } from '../test/helpers/pki.js';
import { startTestGateway } from '../test/helpers/sidecar-destinations.js';
import { proxyConnect, sidecarArgs, startSidecarProcess } from '../test/helpers/sidecar-process.js';
import { grantLoopbackPorts } from '../test/helpers/sidecar-registry.js';

const MIB = 1024 * 1024;
const mib = Math.max(1, Math.min(1024, Number(process.argv[2] ?? 128)));
const rounds = Math.max(1, Math.min(10, Number(process.argv[3] ?? 3)));
const total = mib * MIB;
/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS_PER_SECOND = 100;

/** Counts what arrives; when the client ends, answers with one line and then `total` bytes. */
async function startCountingSink(): Promise<{ port: number; close(): void }> {
  const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    socket.on('error', () => {});
    let received = 0;
    socket.on('data', (c: Buffer) => {
      received += c.length;
    });
    socket.on('end', () => {
      socket.write(`${received}\n`);
      writePattern(socket, total, () => socket.end());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return { port: address.port, close: () => server.close() };
}

/** One round over an established tunnel: MB/s up and down. */
function measure(tunnel: Duplex, early: Buffer): Promise<{ up: number; down: number }> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let upDone: bigint | undefined;
    let down = 0;
    let head = early.toString('latin1');
    const onData = (chunk: Buffer) => {
      if (upDone === undefined) {
        head += chunk.toString('latin1');
        const nl = head.indexOf('\n');
        if (nl < 0) return;
        upDone = process.hrtime.bigint();
        if (Number(head.slice(0, nl)) !== total) reject(new Error(`sink got ${head.slice(0, nl)} bytes`));
        down += head.length - nl - 1;
        return;
      }
      down += chunk.length;
    };
    tunnel.on('data', onData);
    tunnel.once('error', reject);
    tunnel.once('end', () => {
      const end = process.hrtime.bigint();
      if (upDone === undefined || down !== total) {
        reject(new Error(`down: got ${down} of ${total} bytes`));
        return;
      }
      const rate = (ns: bigint) => total / 1e6 / (Number(ns) / 1e9);
      resolve({ up: rate(upDone - start), down: rate(end - upDone) });
    });
    tunnel.resume();
    writePattern(tunnel, total, () => tunnel.end());
  });
}

/** User + system CPU seconds of each process, from /proc (Linux); empty elsewhere. */
async function cpuSeconds(pids: Record<string, number | undefined>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [who, pid] of Object.entries(pids)) {
    if (pid === undefined) continue;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[who] = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
    } catch {
      // Not Linux, or the process is gone: no CPU figures.
    }
  }
  return out;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

async function main(): Promise<void> {
  const pki = await createTestPki();
  const db = await freshDatabase();
  const sink = await startCountingSink();
  const agent = await pki.agent('bench-agent');
  const destination = `127.0.0.1:${sink.port}`;
  await grantLoopbackPorts(db.sql, { identity: 'bench-agent', agentSpki: agent.spkiDer, ports: [sink.port] });
  const gateway = await startTestGateway(pki, db.url);

  const sidecar = await startSidecarProcess(
    sidecarArgs({ gateway: `127.0.0.1:${gateway.port}`, caPath: pki.caCertPath, agent }, [
      '--gateway-server-name',
      'localhost',
    ]),
  );
  const tls = { caPath: pki.caCertPath, agent };
  const paths: Record<string, () => Promise<{ tunnel: Duplex; early: Buffer; done(): void }>> = {
    'gateway direct, HTTP/1.1': async () => {
      const r = await http1Connect(gateway.port, tls, destination);
      if (r.status !== 200) throw new Error(`HTTP/1.1 CONNECT: ${r.status}`);
      return { tunnel: r.socket, early: r.rest, done: () => r.socket.destroy() };
    },
    'gateway direct, HTTP/2': async () => {
      const session = await h2Session(gateway.port, tls);
      const r = await h2Connect(session, destination);
      if (r.status !== 200) throw new Error(`HTTP/2 CONNECT: ${r.status}`);
      return { tunnel: r.stream, early: Buffer.alloc(0), done: () => session.close() };
    },
    'sidecar + gateway': async () => {
      const r = await proxyConnect({ port: sidecar.port }, destination);
      if (r.status !== 200) throw new Error(`CONNECT via sidecar: ${r.status}`);
      return { tunnel: r.socket, early: r.head, done: () => r.socket.destroy() };
    },
  };
  try {
    process.stdout.write(
      `one tunnel, ${mib} MiB each way, median of ${rounds} rounds (MB/s = 10^6 bytes/s)\n`,
    );
    const results = new Map<string, { ups: number[]; downs: number[]; cpu: Record<string, number> }>();
    const processes = { gateway: gateway.child.pid, sidecar: sidecar.child.pid, bench: process.pid };
    // Rounds interleave the paths, so that load from elsewhere on the machine hits them alike.
    for (let i = 0; i < rounds; i++) {
      for (const [name, open] of Object.entries(paths)) {
        const { tunnel, early, done } = await open();
        const cpuBefore = await cpuSeconds(processes);
        const r = await measure(tunnel, early);
        const cpuAfter = await cpuSeconds(processes);
        done();
        const entry = results.get(name) ?? { ups: [], downs: [], cpu: {} };
        entry.ups.push(r.up);
        entry.downs.push(r.down);
        for (const [who, after] of Object.entries(cpuAfter)) {
          entry.cpu[who] = (entry.cpu[who] ?? 0) + after - (cpuBefore[who] ?? 0);
        }
        results.set(name, entry);
      }
    }
    const gib = (2 * total * rounds) / 1024 ** 3;
    for (const [name, { ups, downs, cpu }] of results) {
      // CPU seconds per GiB moved (both directions): where the time goes, independent of contention.
      const perGib = Object.entries(cpu)
        .filter(([who]) => who !== 'sidecar' || name.startsWith('sidecar'))
        .map(([who, seconds]) => `${who} ${(seconds / gib).toFixed(2)}`)
        .join(', ');
      process.stdout.write(
        `${name.padEnd(26)} up ${median(ups).toFixed(0).padStart(5)} MB/s   down ${median(downs).toFixed(0).padStart(5)} MB/s` +
          `   CPU s/GiB: ${perGib || 'n/a'}\n`,
      );
    }
  } finally {
    await sidecar.stop();
    await gateway.stop();
    sink.close();
    await db.drop();
    await pki.cleanup();
  }
}

await main();
