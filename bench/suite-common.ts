/**
 * Shared pieces of the side-by-side suite (bench/suite.ts): the sink's tiny protocol, statistics and
 * /proc readings. The sink protocol is one mode byte and a big-endian uint64 count:
 *   'u' n: the sink reads n bytes, then answers one byte 'k' (n = 0: an immediate 'k', "tunnel is up");
 *   'd' n: the sink writes n bytes.
 * The sink ends its side only after the client ended its own.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type postgres from 'postgres';
import { type FreshDatabase, freshDatabase } from '../test/helpers/db.js';
import { writeGatewayConfig } from '../test/helpers/gateway-process.js';
import { writePattern } from '../test/helpers/loopback-servers.js';
import { createTestPki, type TestAgent, type TestPki } from '../test/helpers/pki.js';
import { createPrincipal, grantPermission, grantScope } from '../test/helpers/registry-rows.js';

export const MIB = 1024 * 1024;

export function sinkHeader(mode: 'u' | 'd', count: number): Buffer {
  const h = Buffer.alloc(9);
  h[0] = mode.charCodeAt(0);
  h.writeBigUInt64BE(BigInt(count), 1);
  return h;
}

/** `total` bytes with backpressure, then `done` (the test helpers' deterministic pattern). */
export const pump = writePattern;

/**
 * bench/bare-relay.ts in its own process, like the gateway: the same TLS termination, no HTTP, no
 * policy. Its first byte from a client picks `uploadPort` ("u") or `downloadPort`.
 */
export async function startBareRelay(input: {
  certPath: string;
  keyPath: string;
  uploadPort: number;
  downloadPort: number;
}): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(new URL('./bare-relay.ts', import.meta.url))],
    {
      env: {
        ...process.env,
        RELAY_CERT: input.certPath,
        RELAY_KEY: input.keyPath,
        RELAY_PORTS: `${input.uploadPort},${input.downloadPort}`,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child
      .stdout!.setEncoding('utf8')
      .once('data', (line: string) => resolve(Number(/port (\d+)/.exec(line)?.[1])));
    child.once('exit', (code: number | null) => reject(new Error(`bare relay exited with ${code}`)));
  });
  return { child, port };
}

export interface Sink {
  readonly port: number;
  close(): Promise<void>;
}

export function startSink(): Promise<Sink> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    let header = Buffer.alloc(0);
    let uploadLeft = -1;
    const onData = (chunk: Buffer): void => {
      if (uploadLeft >= 0) {
        uploadLeft -= chunk.length;
        if (uploadLeft <= 0) {
          uploadLeft = -1;
          socket.write('k');
        }
        return;
      }
      header = Buffer.concat([header, chunk]);
      if (header.length < 9) return;
      const mode = String.fromCharCode(header[0]!);
      const count = Number(header.readBigUInt64BE(1));
      const rest = header.length - 9;
      header = Buffer.alloc(0);
      if (mode === 'd') pump(socket, count, () => {});
      else {
        uploadLeft = count - rest;
        if (uploadLeft <= 0) {
          uploadLeft = -1;
          socket.write('k');
        }
      }
    };
    socket.on('data', onData);
    socket.on('end', () => socket.end());
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      }),
    );
  });
}

/** A principal `bench-org` whose scope covers `destinations`, and a signed permission for each. */
export async function grantBenchAgent(
  sql: postgres.Sql,
  agent: { spkiDer: Buffer },
  identity: string,
  destinations: readonly string[],
): Promise<void> {
  const principal = await createPrincipal(sql, 'bench-org');
  let n = 0;
  for (const destination of destinations) {
    await grantScope(sql, principal.keyId, destination);
    await grantPermission(sql, {
      permissionId: `bench-${++n}`,
      principal,
      identity,
      agentSpki: agent.spkiDer,
      destination,
    });
  }
}

/**
 * A gateway config for benchmarks: 1 MiB HTTP/2 stream windows, 16 MiB connection windows, and room for
 * 2,000 idle tunnels from one loopback address (server.max_connections_per_source is 1,000 by default).
 */
export function writeBenchGatewayConfig(
  pki: { dir: string; serverCertPath: string; serverKeyPath: string },
  databaseUrl: string,
  extraEgress?: string,
  extraPolicy?: string,
): Promise<string> {
  return writeGatewayConfig({
    dir: pki.dir,
    databaseUrl,
    certPath: pki.serverCertPath,
    keyPath: pki.serverKeyPath,
    extraServer:
      'h2_stream_window_bytes = 1048576\nh2_connection_window_bytes = 16777216\nmax_connections_per_source = 4096',
    ...(extraEgress === undefined ? {} : { extraEgress }),
    ...(extraPolicy === undefined ? {} : { extraPolicy }),
  });
}

/** What the suite and the idle-memory bench start with: a PKI, a registry, the sink, one granted agent. */
export interface BenchWorld {
  readonly pki: TestPki;
  readonly db: FreshDatabase;
  readonly sink: Sink;
  readonly agent: TestAgent;
  /** The sink's authority, the one destination granted. */
  readonly authority: string;
  /** A gateway config for 2,000 idle tunnels of one identity (the per-identity cap off). */
  readonly config: string;
}

export async function startBenchWorld(): Promise<BenchWorld> {
  const pki = await createTestPki();
  const db = await freshDatabase();
  const sink = await startSink();
  const agent = await pki.agent('bench-agent');
  const authority = `127.0.0.1:${sink.port}`;
  await grantBenchAgent(db.sql, agent, 'bench-agent', [authority]);
  const config = await writeBenchGatewayConfig(pki, db.url, '[rate_limit]\nmax_tunnels_per_identity = 0');
  return { pki, db, sink, agent, authority, config };
}

/** Runs every cleanup step even when an earlier one fails; reports failures on stderr. */
export async function stopAll(steps: ReadonlyArray<() => unknown>): Promise<void> {
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      process.stderr.write(`cleanup step failed: ${String(err)}\n`);
    }
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
}

/** utime + stime of a process, in milliseconds (from /proc/<pid>/stat, clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the comm field: state is index 0, utime is field 14 → index 11, stime → index 12.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Resident set size of a process, in KiB. */
export function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
}

export type ProxyKind = 'bare' | 'h1' | 'h2' | 'squid';

export interface LoadTarget {
  readonly kind: ProxyKind;
  readonly port: number;
  /** The sink's authority, for CONNECT. */
  readonly authority: string;
  readonly caPath: string;
  readonly certPath: string;
  readonly keyPath: string;
}

export type LoadJob =
  | { op: 'transfer'; target: LoadTarget; direction: 'up' | 'down'; bytes: number; streams: number }
  | { op: 'open'; target: LoadTarget; count: number; concurrency: number; resume: boolean }
  | { op: 'h2open'; target: LoadTarget; count: number; concurrency: number }
  | { op: 'handshake'; target: LoadTarget; count: number; concurrency: number; resume: boolean }
  | { op: 'idle'; target: LoadTarget; count: number; concurrency: number };

export interface LoadResult {
  /** Wall time of the measured part, seconds. */
  seconds: number;
  /** Per-operation latencies in ms (open, h2open). */
  latencies?: number[];
  /** Operations completed (tunnels, handshakes). */
  done?: number;
  /** TLS sessions that were resumed (resume jobs). */
  resumed?: number;
  /** Client CPU during the measured part, ms. */
  clientCpuMs: number;
}
