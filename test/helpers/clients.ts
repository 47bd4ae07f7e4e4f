import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type ClientHttp2Session, type ClientHttp2Stream, connect as h2connect } from 'node:http2';
import type { Duplex } from 'node:stream';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';

export interface AgentFiles {
  readonly certPath: string;
  readonly keyPath: string;
}

export interface ClientTls {
  readonly caPath: string;
  readonly agent?: AgentFiles;
}

function tlsOptions(tls: ClientTls) {
  return {
    ca: readFileSync(tls.caPath),
    ...(tls.agent ? { cert: readFileSync(tls.agent.certPath), key: readFileSync(tls.agent.keyPath) } : {}),
    servername: 'localhost',
  };
}

export interface Http1ConnectResult {
  readonly status: number;
  readonly head: string;
  readonly socket: TLSSocket;
  /** Bytes after the response head (the body of a refusal, or early tunnel bytes). */
  readonly rest: Buffer;
}

/** Opens TLS (ALPN http/1.1), writes `requestHead`, reads the response head. */
export function http1Request(port: number, tls: ClientTls, requestHead: string): Promise<Http1ConnectResult> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ALPNProtocols: ['http/1.1'], ...tlsOptions(tls) });
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const head = buffered.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      resolve({ status, head, socket, rest: buffered.subarray(end + 4) });
    };
    socket.on('data', onData);
    socket.once('secureConnect', () => socket.write(requestHead));
    socket.once('error', reject);
    socket.once('close', () =>
      reject(new Error(`connection closed before a response (got ${buffered.length} bytes)`)),
    );
  });
}

export function http1Connect(port: number, tls: ClientTls, authority: string): Promise<Http1ConnectResult> {
  return http1Request(port, tls, `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
}

/** Reads until the peer ends; resolves with everything received. */
export function readAll(stream: Duplex, initial: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [initial];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
    stream.resume();
  });
}

/**
 * Writes `text` into an open tunnel to an echo server and resolves with what came back once as many
 * characters arrived: bytes went both ways. Resumes the stream (http1Connect hands sockets over paused).
 */
export function roundTrip(stream: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const onData = (chunk: Buffer) => {
      got += chunk.toString();
      if (got.length < text.length) return;
      stream.off('data', onData);
      stream.off('error', reject);
      resolve(got);
    };
    stream.on('data', onData);
    stream.once('error', reject);
    stream.resume();
    stream.write(text);
  });
}

/** Reads until end, hashing; for large transfers without holding them in memory. */
export function hashAll(
  stream: Duplex,
  initial: Buffer = Buffer.alloc(0),
): Promise<{ bytes: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256').update(initial);
    let bytes = initial.length;
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    stream.once('end', () => resolve({ bytes, sha256: hash.digest('hex') }));
    stream.once('error', reject);
    stream.resume();
  });
}

export function h2Session(port: number, tls: ClientTls, windowBytes = 1 << 20): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`https://127.0.0.1:${port}`, {
      ...tlsOptions(tls),
      settings: { initialWindowSize: windowBytes },
    });
    session.once('connect', () => {
      session.setLocalWindowSize(16 * windowBytes);
      resolve(session);
    });
    session.once('error', reject);
  });
}

export interface H2ConnectResult {
  readonly status: number;
  readonly stream: ClientHttp2Stream;
}

export function h2Connect(
  session: ClientHttp2Session,
  authority: string,
  extraHeaders: Record<string, string> = {},
): Promise<H2ConnectResult> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'CONNECT', ':authority': authority, ...extraHeaders });
    stream.once('response', (headers) => resolve({ status: Number(headers[':status']), stream }));
    stream.once('error', reject);
  });
}

/**
 * Finishes an HTTP/1.1 CONNECT to an echo destination: through a 200 tunnel `payload` is sent, its end
 * too, and must come back whole; any other answer closes the connection. Returns the status.
 */
export async function echoOrClose(res: Http1ConnectResult, payload: Buffer | string): Promise<number> {
  if (res.status !== 200) {
    res.socket.destroy();
    return res.status;
  }
  const reply = readAll(res.socket, res.rest);
  res.socket.end(payload);
  const sent = Buffer.from(payload);
  if (!(await reply).equals(sent))
    throw new Error(`the echo came back different from the ${sent.length} bytes sent`);
  return res.status;
}
