import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { within } from './bounded.js';
import type { ClientTls } from './clients.js';

/**
 * An HTTP/2 client that writes frames itself, for what Node's client will not do: ignore a GOAWAY and
 * keep its connection open, reset streams as fast as it can open them, send PINGs and nothing else. It is
 * the attacker of issue 10 (items 2 and 3); a well-behaved client closes its side on GOAWAY, and then a
 * closed connection would prove nothing about the gateway.
 *
 * Frames (RFC 9113 §4.1): 24-bit length, type, flags, 31-bit stream id. Header blocks use only HPACK
 * literals without indexing (RFC 7541 §6.2.2), so no encoder state is needed.
 */
const FRAME = {
  data: 0,
  headers: 1,
  rstStream: 3,
  settings: 4,
  ping: 6,
  goaway: 7,
  windowUpdate: 8,
} as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const H2_CANCEL = 0x8;

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** RFC 7541 §5.1 integer with a `prefixBits`-bit prefix (the first byte's other bits are 0). */
function hpackInteger(value: number, prefixBits: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([value]);
  const bytes = [max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A header block of literal fields without indexing, new names, no Huffman coding. */
export function headerBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'utf8');
    const v = Buffer.from(value, 'utf8');
    parts.push(Buffer.from([0x00]), hpackInteger(n.length, 7), n, hpackInteger(v.length, 7), v);
  }
  return Buffer.concat(parts);
}

export function connectHeaders(authority: string): Array<[string, string]> {
  return [
    [':method', 'CONNECT'],
    [':authority', authority],
  ];
}

export function getHeaders(authority: string): Array<[string, string]> {
  return [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':authority', authority],
    [':path', '/'],
  ];
}

export interface RawH2Client {
  readonly socket: TLSSocket;
  /** `ip:port` of this client as the gateway logs it (`source_peer_addr`). */
  readonly peerAddr: string;
  /**
   * Resolves when the TCP connection is gone at the gateway: the client keeps its side open (it never
   * sends a FIN), so its socket closes only when the gateway resets it or refuses what it writes.
   */
  readonly closed: Promise<void>;
  /** Resolves with the error code of the first GOAWAY received. */
  readonly goaway: Promise<number>;
  /** Stream ids the gateway sent response HEADERS on. */
  readonly answered: Set<number>;
  /** Opens stream `id` with `fields`; the stream stays open for data unless `endStream`. */
  headers(id: number, fields: ReadonlyArray<readonly [string, string]>, endStream?: boolean): void;
  rst(id: number, code?: number): void;
  ping(): void;
  /** Writes several frames in one TCP write (a burst arrives in one read at the gateway). */
  burst(frames: Buffer[]): void;
  /** Frame builders for `burst`. */
  readonly frames: {
    headers(id: number, fields: ReadonlyArray<readonly [string, string]>): Buffer;
    rst(id: number, code?: number): Buffer;
  };
  /** Resolves once response HEADERS for stream `id` have arrived. */
  answer(id: number): Promise<void>;
  destroy(): void;
}

/**
 * Completes TLS with ALPN h2 and the connection preface, acknowledges the server's SETTINGS and answers
 * its PINGs; reads everything the gateway sends (so the gateway's writes never stall on this client).
 */
export async function rawH2Connect(
  port: number,
  tls: ClientTls,
  opts: {
    /** Receive window per stream and for the connection: what the gateway may send before it must wait. */
    windowBytes?: number;
    /** A loopback source address of its own (127.0.0.2, …): the gateway counts sources apart. */
    localAddress?: string;
  } = {},
): Promise<RawH2Client> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    ...(opts.localAddress === undefined ? {} : { localAddress: opts.localAddress }),
    // Never ends its side: only the gateway can close this connection (a FIN from it is not a close).
    allowHalfOpen: true,
    ALPNProtocols: ['h2'],
    ca: readFileSync(tls.caPath),
    ...(tls.agent ? { cert: readFileSync(tls.agent.certPath), key: readFileSync(tls.agent.keyPath) } : {}),
    servername: 'localhost',
    // tls.connect passes it on to the socket; @types/node does not list it.
  } as ConnectionOptions);
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  if (socket.alpnProtocol !== 'h2') throw new Error(`ALPN ${String(socket.alpnProtocol)}, not h2`);
  // Not events.once: that rejects on the 'error' (ECONNRESET, EPIPE) that a reset connection gives first.
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const answered = new Set<number>();
  const answerWaiters = new Map<number, () => void>();
  let onGoaway: (code: number) => void = () => {};
  const goaway = new Promise<number>((resolve) => {
    onGoaway = resolve;
  });
  let pending: Buffer = Buffer.alloc(0);
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const type = pending[3]!;
      const flags = pending[4]!;
      const streamId = pending.readUInt32BE(5) & 0x7fffffff;
      const payload = pending.subarray(9, 9 + length);
      pending = pending.subarray(9 + length);
      if (type === FRAME.settings && (flags & ACK) === 0) write(frame(FRAME.settings, ACK, 0));
      else if (type === FRAME.ping && (flags & ACK) === 0) write(frame(FRAME.ping, ACK, 0, payload));
      else if (type === FRAME.goaway) onGoaway(payload.readUInt32BE(4));
      else if (type === FRAME.headers) {
        answered.add(streamId);
        answerWaiters.get(streamId)?.();
      }
    }
  });
  const write = (bytes: Buffer) => {
    if (!socket.destroyed && socket.writable) socket.write(bytes);
  };
  const settings = Buffer.alloc(opts.windowBytes === undefined ? 0 : 6);
  if (opts.windowBytes !== undefined) {
    settings.writeUInt16BE(0x4, 0); // SETTINGS_INITIAL_WINDOW_SIZE
    settings.writeUInt32BE(opts.windowBytes, 2);
  }
  write(Buffer.concat([PREFACE, frame(FRAME.settings, 0, 0, settings)]));
  if (opts.windowBytes !== undefined && opts.windowBytes > 65_535) {
    const increment = Buffer.alloc(4);
    increment.writeUInt32BE(opts.windowBytes - 65_535);
    write(frame(FRAME.windowUpdate, 0, 0, increment));
  }
  const frames = {
    headers: (id: number, fields: ReadonlyArray<readonly [string, string]>, endStream = false) =>
      frame(FRAME.headers, END_HEADERS | (endStream ? END_STREAM : 0), id, headerBlock(fields)),
    rst: (id: number, code = H2_CANCEL) => {
      const payload = Buffer.alloc(4);
      payload.writeUInt32BE(code);
      return frame(FRAME.rstStream, 0, id, payload);
    },
  };
  return {
    socket,
    peerAddr: `${socket.localAddress}:${socket.localPort}`,
    closed,
    goaway,
    answered,
    headers: (id, fields, endStream = false) => write(frames.headers(id, fields, endStream)),
    rst: (id, code) => write(frames.rst(id, code)),
    ping: () => write(frame(FRAME.ping, 0, 0, Buffer.alloc(8))),
    burst: (list) => write(Buffer.concat(list)),
    frames: { headers: (id, fields) => frames.headers(id, fields), rst: frames.rst },
    answer: (id) =>
      answered.has(id) ? Promise.resolve() : new Promise((resolve) => answerWaiters.set(id, () => resolve())),
    destroy: () => socket.destroy(),
  };
}

/**
 * The client keeps PINGing (activity that a gateway must not count) until its connection is gone at the
 * gateway; it fails with `what` after `boundMs`. Destroys the client either way.
 */
export async function closedByGateway(client: RawH2Client, boundMs: number, what: string): Promise<void> {
  const pinger = setInterval(() => client.ping(), 50);
  try {
    await within(client.closed, boundMs, what);
  } finally {
    clearInterval(pinger);
    client.destroy();
  }
}
