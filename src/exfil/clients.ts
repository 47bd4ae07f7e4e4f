import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as http2Connect,
  constants as http2Constants,
} from 'node:http2';
import { connect as netConnect } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';

/** How the test reaches the gateway as the agent: its address and the TLS material. */
export interface AgentEndpoint {
  readonly host: string;
  readonly port: number;
  /** The name the gateway's certificate is checked against. */
  readonly serverName: string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** A tunnel as a strategy drives it: write into it, end it (half-close), or drop it. */
export interface OpenedTunnel {
  readonly stream: NodeJS.WritableStream & NodeJS.ReadableStream;
  /** Abrupt close: TCP reset (HTTP/1.1) or RST_STREAM CANCEL (HTTP/2). */
  reset(): void;
}

/** Not a 200: the gateway refused (or the client gave up before its answer). */
export class TunnelRefused extends Error {
  override name = 'TunnelRefused';
  constructor(readonly status: number) {
    super(`CONNECT answered ${status}`);
  }
}

const CONNECT_TIMEOUT_MS = 10_000;

/**
 * HTTP/1.1 CONNECT on a new TLS connection. `pipelined` bytes go out in the same write as the request
 * head, before the gateway could have answered: they belong to the tunnel and must be charged like any.
 */
export function http1Tunnel(
  endpoint: AgentEndpoint,
  authority: string,
  pipelined?: Buffer,
): Promise<OpenedTunnel> {
  return new Promise((resolve, reject) => {
    // TLS over a TCP socket of our own, which can be reset (a TLS socket cannot).
    const raw = netConnect(endpoint.port, endpoint.host);
    raw.on('error', () => {});
    const socket: TLSSocket = tlsConnect({
      socket: raw,
      servername: endpoint.serverName,
      ca: endpoint.ca,
      cert: endpoint.cert,
      key: endpoint.key,
      ALPNProtocols: ['http/1.1'],
    });
    let head = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error('no CONNECT answer in time')), CONNECT_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', fail);
      socket.on('error', () => {});
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? 0);
      if (status !== 200) {
        socket.destroy();
        reject(new TunnelRefused(status));
        return;
      }
      // Whatever the sink answers is read and dropped, so the tunnel never stalls on its own input.
      socket.resume();
      resolve({ stream: socket, reset: () => raw.resetAndDestroy() });
    };
    socket.on('data', onData);
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      const request = Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, 'latin1');
      socket.write(pipelined === undefined ? request : Buffer.concat([request, pipelined]));
    });
  });
}

/** One HTTP/2 connection with 1 MiB stream windows (what a client that wants throughput asks for). */
export function http2Session(endpoint: AgentEndpoint): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://${endpoint.host}:${endpoint.port}`, {
      servername: endpoint.serverName,
      ca: endpoint.ca,
      cert: endpoint.cert,
      key: endpoint.key,
      settings: { initialWindowSize: 1 << 20 },
    });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error('no HTTP/2 connection in time'));
    }, CONNECT_TIMEOUT_MS);
    session.once('connect', () => {
      clearTimeout(timer);
      session.off('error', reject);
      session.on('error', () => {});
      resolve(session);
    });
    session.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

/** One CONNECT stream on an HTTP/2 connection. */
export function http2Tunnel(session: ClientHttp2Session, authority: string): Promise<OpenedTunnel> {
  return new Promise((resolve, reject) => {
    let stream: ClientHttp2Stream;
    try {
      stream = session.request({ ':method': 'CONNECT', ':authority': authority });
    } catch (err) {
      reject(err);
      return;
    }
    stream.once('response', (headers) => {
      stream.off('error', reject);
      stream.on('error', () => {});
      const status = Number(headers[':status']);
      if (status !== 200) {
        stream.close(http2Constants.NGHTTP2_CANCEL);
        reject(new TunnelRefused(status));
        return;
      }
      stream.resume();
      resolve({ stream, reset: () => stream.close(http2Constants.NGHTTP2_CANCEL) });
    });
    stream.once('error', reject);
    // A session destroyed before the answer closes the stream, sometimes without an error.
    stream.once('close', () => reject(new Error('the stream closed before its CONNECT was answered')));
  });
}
