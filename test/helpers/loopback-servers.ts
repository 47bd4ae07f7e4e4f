import { createHash } from 'node:crypto';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';

/** TCP echo on loopback that keeps half-close: it ends its side only after the client ended. */
export async function startEchoServer(): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  return listen(server);
}

/**
 * A sink that hashes everything it receives and, once the client ends, answers with
 * `<bytes> <sha256>\n` followed by `replyBytes` deterministic bytes, then ends.
 */
export async function startHashSink(replyBytes = 0): Promise<{ port: number; close(): Promise<void> }> {
  const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    socket.on('error', () => {});
    const hash = createHash('sha256');
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    socket.on('end', () => {
      socket.write(`${bytes} ${hash.digest('hex')}\n`);
      writePattern(socket, replyBytes, () => socket.end());
    });
  });
  return listen(server);
}

/** Deterministic content (so the receiver can hash and compare) written with backpressure. */
export function writePattern(socket: NodeJS.WritableStream, total: number, done: () => void): void {
  const block = patternBlock();
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, block.length);
      left -= n;
      if (!socket.write(n === block.length ? block : block.subarray(0, n))) {
        socket.once('drain', pump);
        return;
      }
    }
    done();
  };
  pump();
}

/** sha256 of `prefix` followed by `total` pattern bytes. */
export function patternHash(total: number, prefix = ''): string {
  const block = patternBlock();
  const hash = createHash('sha256').update(prefix);
  let left = total;
  while (left > 0) {
    const n = Math.min(left, block.length);
    hash.update(n === block.length ? block : block.subarray(0, n));
    left -= n;
  }
  return hash.digest('hex');
}

let cachedBlock: Buffer | undefined;
function patternBlock(): Buffer {
  if (!cachedBlock) {
    cachedBlock = Buffer.alloc(256 * 1024);
    for (let i = 0; i < cachedBlock.length; i++) cachedBlock[i] = (i * 31 + (i >> 8)) & 0xff;
  }
  return cachedBlock;
}

/** A minimal HTTP server (for curl) that answers every request with `hello from <name>`. */
export async function startHttpServer(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const { createServer: createHttp } = await import('node:http');
  const server = createHttp((req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello from ${name} ${req.url}\n`);
  });
  return listen(server as unknown as Server);
}

/** A loopback port with nothing listening (bound, then closed). */
export async function closedPort(): Promise<number> {
  const server = createServer();
  const { port, close } = await listen(server);
  await close();
  return port;
}

async function listen(server: Server): Promise<{ port: number; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as Server & { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}

/**
 * A destination that counts its connections as the gateway's dials reach it: `accepted` in total and
 * `open` now, where a connection stops being open when the gateway ends, resets or closes it. What each
 * connection does is `serve`'s choice; by default it reads and discards, never answers and never ends
 * its side (a server that waits for its client), so a tunnel to it is only ever closed by the gateway:
 * a tunnel that outlives its client shows as a connection that stays open, or as a tunnel slot still
 * taken.
 */
export interface CountingServer {
  readonly port: number;
  readonly accepted: number;
  /** Connections the gateway has neither ended nor closed. */
  readonly open: number;
  /** Resolves once at most `n` connections are open; rejects after `boundMs` with the count. */
  untilOpenAtMost(n: number, boundMs: number): Promise<void>;
  /** Resolves once `n` connections were accepted in total; rejects after `boundMs`. */
  untilAccepted(n: number, boundMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function startCountingServer(
  serve: (socket: Socket) => void = () => {},
): Promise<CountingServer> {
  let accepted = 0;
  let open = 0;
  const sockets = new Set<Socket>();
  const changed = new Set<() => void>();
  const notify = () => {
    for (const check of [...changed]) check();
  };
  const server = createServer({ allowHalfOpen: true }, (socket: Socket) => {
    accepted++;
    open++;
    sockets.add(socket);
    let counted = true;
    const gone = () => {
      if (!counted) return;
      counted = false;
      open--;
      notify();
    };
    socket.on('error', () => {});
    socket.once('end', gone);
    socket.once('close', gone);
    socket.once('close', () => sockets.delete(socket));
    // Read (and drop) what arrives, so that the gateway's end is seen.
    socket.resume();
    notify();
    serve(socket);
  });
  const { port, close } = await listen(server);
  const until = (done: () => boolean, boundMs: number, what: () => string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = () => {
        if (!done()) return;
        changed.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        changed.delete(check);
        reject(new Error(what()));
      }, boundMs);
      changed.add(check);
      check();
    });
  return {
    port,
    get accepted() {
      return accepted;
    },
    get open() {
      return open;
    },
    untilOpenAtMost: (n, boundMs) =>
      until(
        () => open <= n,
        boundMs,
        () => `${open} destination connections still open after ${boundMs} ms (expected at most ${n})`,
      ),
    untilAccepted: (n, boundMs) =>
      until(
        () => accepted >= n,
        boundMs,
        () => `${accepted} destination connections accepted after ${boundMs} ms (expected ${n})`,
      ),
    close: () => {
      // It never ends its side by itself, so net.Server.close would wait for these forever.
      for (const socket of sockets) socket.destroy();
      return close();
    },
  };
}

/**
 * What a flooding destination does with each connection: writes `limitBytes` pattern bytes as fast as
 * the connection takes them (with backpressure, so it never buffers more than one chunk), and counts the
 * connections whose writes are held by backpressure right now: a tunnel whose client stopped reading.
 */
export function flooding(limitBytes: number): { serve: (socket: Socket) => void; readonly held: number } {
  let held = 0;
  const block = patternBlock();
  return {
    get held() {
      return held;
    },
    serve(socket: Socket) {
      let left = limitBytes;
      let holding = false;
      const release = () => {
        if (!holding) return;
        holding = false;
        held--;
      };
      socket.once('close', release);
      const pump = (): void => {
        release();
        while (left > 0 && !socket.destroyed) {
          left -= block.length;
          if (!socket.write(block)) {
            holding = true;
            held++;
            socket.once('drain', pump);
            return;
          }
        }
      };
      pump();
    },
  };
}
