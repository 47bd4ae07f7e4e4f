import { once } from 'node:events';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { WindowCounter } from './window-counter.js';

/** What the sink thread reports: every arrival since the last reset, in time order. */
export interface SinkSnapshot {
  readonly times: Float64Array;
  readonly sizes: Float64Array;
  readonly connections: number;
}

export interface CountingSink {
  readonly port: number;
  readonly host: string;
  /** Starts counting afresh. */
  reset(): Promise<void>;
  /** Arrivals since the last reset. */
  snapshot(): Promise<WindowCounter & { readonly connections: number }>;
  /** Bytes since the last reset (cheap: no arrivals copied). */
  total(): Promise<number>;
  close(): Promise<void>;
}

/**
 * The destination of an exfiltration test: accepts any number of connections and counts what arrives,
 * reading as fast as it can so that the gateway, not the sink, sets the pace. It runs in a thread of its
 * own: in the client's event loop, a burst of TLS handshakes or encryption delayed its reads by hundreds
 * of milliseconds, and bytes that had arrived over that time were timestamped as one clump (measured:
 * 600 KiB "in 100 ms" at 1 MiB/s). Nothing is stored or echoed; it ends its side when a client ends.
 */
export async function startCountingSink(host: string, port: number): Promise<CountingSink> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { host, port } });
  worker.unref();
  // The thread answers requests in order; a thread that fails fails every pending request.
  const pending: Array<{ resolve: (m: SinkMessage) => void; reject: (e: unknown) => void }> = [];
  worker.on('message', (message: SinkMessage) => pending.shift()?.resolve(message));
  worker.on('error', (err) => {
    for (const p of pending.splice(0)) p.reject(err);
  });
  const next = (): Promise<SinkMessage> =>
    new Promise((resolve, reject) => pending.push({ resolve, reject }));
  const ask = (request: SinkRequest): Promise<SinkMessage> => {
    const reply = next();
    worker.postMessage(request);
    return reply;
  };
  const ready = await next();
  if (ready.kind !== 'listening') throw new Error('the sink thread did not start');
  return {
    port: ready.port,
    host: ready.host,
    async reset() {
      await ask({ kind: 'reset' });
    },
    async snapshot() {
      const reply = await ask({ kind: 'snapshot' });
      if (reply.kind !== 'snapshot') throw new Error('the sink thread answered out of turn');
      const counter = new WindowCounter();
      for (let i = 0; i < reply.times.length; i++) counter.record(reply.times[i]!, reply.sizes[i]!);
      return Object.assign(counter, { connections: reply.connections });
    },
    async total() {
      const reply = await ask({ kind: 'total' });
      return reply.kind === 'total' ? reply.bytes : 0;
    },
    async close() {
      await ask({ kind: 'close' });
      await worker.terminate();
    },
  };
}

type SinkRequest = { kind: 'reset' } | { kind: 'snapshot' } | { kind: 'total' } | { kind: 'close' };
type SinkMessage =
  | { kind: 'listening'; host: string; port: number }
  | { kind: 'done' }
  | { kind: 'total'; bytes: number }
  | ({ kind: 'snapshot' } & SinkSnapshot);

/** The sink thread itself. */
async function serve(host: string, port: number): Promise<void> {
  let counter = new WindowCounter();
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.on('data', (chunk: Buffer) => counter.record(performance.now(), chunk.length));
    socket.on('end', () => socket.end());
  });
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const port_ = parentPort!;
  port_.postMessage({ kind: 'listening', host: address.address, port: address.port } satisfies SinkMessage);
  port_.on('message', (request: SinkRequest) => {
    if (request.kind === 'reset') {
      counter = new WindowCounter();
      connections = 0;
      port_.postMessage({ kind: 'done' } satisfies SinkMessage);
    } else if (request.kind === 'total') {
      port_.postMessage({ kind: 'total', bytes: counter.total } satisfies SinkMessage);
    } else if (request.kind === 'snapshot') {
      const { times, sizes } = counter.arrays();
      port_.postMessage({ kind: 'snapshot', times, sizes, connections } satisfies SinkMessage, [
        times.buffer,
        sizes.buffer,
      ]);
    } else {
      for (const s of sockets) s.destroy();
      server.close(() => port_.postMessage({ kind: 'done' } satisfies SinkMessage));
    }
  });
}

if (!isMainThread && (workerData as { host?: unknown } | null)?.host !== undefined) {
  const { host, port } = workerData as { host: string; port: number };
  void serve(host, port);
}
