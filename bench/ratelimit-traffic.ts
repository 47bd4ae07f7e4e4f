/**
 * Traffic for the rate-limit benchmark: loopback destinations that log every arrival, tunnel openers
 * for both protocols, and endless senders. Everything stops by reset, so that bytes still queued in
 * kernel buffers are dropped instead of draining through a throttled tunnel for minutes.
 */
import { readFileSync } from 'node:fs';
import { type ClientHttp2Session, type ClientHttp2Stream, constants as h2constants } from 'node:http2';
import { type AddressInfo, createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { type ClientTls, h2Connect, h2Session } from '../test/helpers/clients.js';
import type { ArrivalLog } from './ratelimit-stats.js';

const BLOCK = Buffer.alloc(64 * 1024, 0x5a);

export interface Destination {
  readonly port: number;
  /** Connections accepted from now on log their arrivals here, numbered in accept order. */
  capture(log: ArrivalLog | undefined): void;
  close(): Promise<void>;
}

/** Upload destination: reads and logs everything each connection delivers. */
export async function startArrivalSink(): Promise<Destination> {
  let log: ArrivalLog | undefined;
  let next = 0;
  const server = createServer((socket) => {
    const index = next++;
    const target = log;
    socket.on('error', () => {});
    socket.on('end', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => target?.record(performance.now(), index, chunk.length));
  });
  return listen(server, (l) => {
    log = l;
    next = 0;
  });
}

/**
 * Download destination: once the client sends its first byte ("go"), writes 64 KiB blocks as fast as
 * the connection takes them until it is closed.
 */
export async function startPumpSource(): Promise<Destination> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      const pump = (): void => {
        while (!socket.destroyed && socket.write(BLOCK)) {
          // keep writing until the kernel buffer is full
        }
        if (!socket.destroyed) socket.once('drain', pump);
      };
      pump();
    });
    socket.on('end', () => socket.destroy());
  });
  return listen(server, () => {});
}

async function listen(server: Server, capture: (log: ArrivalLog | undefined) => void): Promise<Destination> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  return {
    port: (server.address() as AddressInfo).port,
    capture,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface OpenTunnels {
  readonly streams: Duplex[];
  /** Resets every tunnel (RST on HTTP/1.1's TCP connection, RST_STREAM on HTTP/2) and closes sessions. */
  reset(): void;
}

/** Opens `count` CONNECT tunnels of one identity to 127.0.0.1:port, one after the other. */
export async function openTunnels(
  protocol: 'HTTP/1.1' | 'HTTP/2',
  gatewayPort: number,
  tls: ClientTls,
  port: number,
  count: number,
): Promise<OpenTunnels> {
  const authority = `127.0.0.1:${port}`;
  if (protocol === 'HTTP/2') {
    const session: ClientHttp2Session = await h2Session(gatewayPort, tls);
    const streams: Duplex[] = [];
    for (let i = 0; i < count; i++) {
      const { status, stream } = await h2Connect(session, authority);
      if (status !== 200) throw new Error(`CONNECT ${authority} over HTTP/2: ${status}`);
      stream.on('error', () => {});
      streams.push(stream);
    }
    return {
      streams,
      reset() {
        for (const s of streams) (s as ClientHttp2Stream).close(h2constants.NGHTTP2_CANCEL);
        session.close();
      },
    };
  }
  const raws: Socket[] = [];
  const streams: Duplex[] = [];
  for (let i = 0; i < count; i++) {
    const { raw, socket } = await http1Tunnel(gatewayPort, tls, authority);
    raws.push(raw);
    streams.push(socket);
  }
  return {
    streams,
    reset() {
      for (const r of raws) r.resetAndDestroy();
    },
  };
}

/** HTTP/1.1 CONNECT over a TLS socket whose TCP socket we keep, so that it can be reset. */
function http1Tunnel(
  gatewayPort: number,
  tls: ClientTls,
  authority: string,
): Promise<{ raw: Socket; socket: Duplex }> {
  return new Promise((resolve, reject) => {
    const raw = netConnect(gatewayPort, '127.0.0.1');
    raw.on('error', () => {});
    const socket = tlsConnect({
      socket: raw,
      ca: readFileSync(tls.caPath),
      ...(tls.agent ? { cert: readFileSync(tls.agent.certPath), key: readFileSync(tls.agent.keyPath) } : {}),
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
    });
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head.subarray(0, end).toString('latin1'))?.[1];
      if (status !== '200') {
        reject(new Error(`CONNECT ${authority} over HTTP/1.1: ${status}`));
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      socket.on('error', () => {});
      resolve({ raw, socket });
    };
    socket.on('data', onData);
    socket.once('secureConnect', () =>
      socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`),
    );
    socket.once('error', reject);
  });
}

/** Writes 64 KiB blocks as fast as the tunnel takes them, until `stop()`. */
export function sendEndlessly(stream: Duplex): { stop(): void } {
  let stopped = false;
  const pump = (): void => {
    while (!stopped && !stream.destroyed && stream.write(BLOCK)) {
      // the tunnel's flow control (or the limiter behind it) decides the pace
    }
    if (!stopped && !stream.destroyed) stream.once('drain', pump);
  };
  pump();
  return {
    stop() {
      stopped = true;
    },
  };
}

/** Logs every chunk the client receives on `stream` (download cases). */
export function logArrivals(stream: Duplex, log: ArrivalLog, index: number): void {
  stream.on('data', (chunk: Buffer) => log.record(performance.now(), index, chunk.length));
  stream.resume();
}
