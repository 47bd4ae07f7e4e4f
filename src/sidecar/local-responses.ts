import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * Answers to the local client on a raw socket (CONNECT requests leave Node's HTTP server before we
 * answer them). Errors made by the sidecar say "sidecar:" so the agent, or whoever reads its output,
 * can tell them from the gateway's own answers, which are passed through unchanged.
 */
export const TUNNEL_ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';

/** A complete response that closes the connection; `headers` are added verbatim. */
export function closingResponse(
  status: number,
  body: string | Buffer,
  headers: Record<string, string> = {},
): Buffer {
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${payload.length}`,
    'Connection: close',
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), payload]);
}

/** Writes a closing response and ends the socket once it is flushed. */
export function answerAndClose(
  socket: Duplex,
  status: number,
  body: string | Buffer,
  headers?: Record<string, string>,
): void {
  if (socket.destroyed) return;
  socket.end(closingResponse(status, body, headers));
}

/** A sidecar-made error body: one line, prefixed so it cannot be mistaken for the gateway's. */
export function sidecarMessage(text: string): string {
  return `sidecar: ${text}\n`;
}

/**
 * Reads a refusal body from the gateway (a short line such as `forbidden`), at most `limit` bytes,
 * so it can be passed on to the local client.
 */
export function readBounded(stream: Duplex, limit = 4096): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = () => {
      stream.off('data', onData);
      resolve(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer) => {
      const room = limit - size;
      chunks.push(chunk.length > room ? chunk.subarray(0, room) : chunk);
      size += Math.min(chunk.length, room);
      if (size >= limit) {
        finish();
        stream.destroy();
      }
    };
    stream.on('data', onData);
    stream.once('end', finish);
    stream.once('close', finish);
  });
}
