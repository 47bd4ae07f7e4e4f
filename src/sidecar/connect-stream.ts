import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  constants,
  type OutgoingHttpHeaders,
} from 'node:http2';
import { describeGatewayError } from './gateway-errors.js';

export type TunnelRequestResult =
  /** The gateway answered; `status` is its status, `stream` the CONNECT stream (the tunnel on 200). */
  | { readonly kind: 'answered'; readonly status: number; readonly stream: ClientHttp2Stream }
  /** No answer from the gateway; `status` is what the local client should get, `reason` why. */
  | { readonly kind: 'failed'; readonly status: 502 | 504; readonly reason: string }
  /** The caller's signal fired first: the CONNECT stream was cancelled (or never sent). */
  | { readonly kind: 'cancelled' };

export type Attempt =
  | TunnelRequestResult
  /** The connection went away before the gateway could have acted on the stream: safe to retry. */
  | { readonly kind: 'not-started'; readonly reason: string };

export const CANCELLED = { kind: 'cancelled' } as const;

export interface SendOptions {
  /** The local client's departure: fires → the stream is cancelled with CANCEL. */
  readonly signal?: AbortSignal;
  /** How long the gateway may take to answer (sidecar request_timeout_ms). */
  readonly timeoutMs: number;
  /** Called with the stream as soon as it is sent, before any answer. */
  readonly onStream: (stream: ClientHttp2Stream) => void;
}

/**
 * Sends one CONNECT stream on `session` and waits for the gateway's answer, the caller's signal, the
 * timeout or the stream's end, whichever comes first. A stream the gateway refused (REFUSED_STREAM) or
 * that died with its connection is `not-started`: the gateway cannot have acted on it, so it may be
 * retried on a fresh connection.
 */
export function sendConnect(
  session: ClientHttp2Session,
  authority: string,
  headers: OutgoingHttpHeaders,
  options: SendOptions,
): Promise<Attempt> {
  const { signal, timeoutMs } = options;
  let stream: ClientHttp2Stream;
  try {
    stream = session.request(
      { ...headers, ':method': 'CONNECT', ':authority': authority },
      { endStream: false },
    );
  } catch (error) {
    // The session closed between our check and the request (GOAWAY, socket gone).
    return Promise.resolve({ kind: 'not-started', reason: describeGatewayError(error) });
  }
  options.onStream(stream);
  return new Promise<Attempt>((resolve) => {
    let streamError: Error | undefined;
    // Kept for the stream's whole life: the tunnel adds its own handler, and an error in the gap
    // must not crash the process.
    stream.on('error', (error) => {
      streamError = error;
    });
    const settle = (attempt: Attempt) => {
      stream.off('response', onResponse);
      stream.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
      stream.setTimeout(0);
      resolve(attempt);
    };
    const onAbort = () => {
      settle(CANCELLED);
      stream.close(constants.NGHTTP2_CANCEL);
    };
    const onResponse = (responseHeaders: Record<string, unknown>) => {
      settle({ kind: 'answered', status: Number(responseHeaders[':status']), stream });
    };
    const onClose = () => {
      if (stream.rstCode === constants.NGHTTP2_REFUSED_STREAM || session.destroyed || session.closed) {
        settle({
          kind: 'not-started',
          reason: streamError ? describeGatewayError(streamError) : 'connection closed',
        });
        return;
      }
      settle({
        kind: 'failed',
        status: 502,
        reason: `the agent-gateway reset the CONNECT stream (HTTP/2 error code ${stream.rstCode ?? 'unknown'})`,
      });
    };
    stream.once('response', onResponse);
    stream.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
    stream.setTimeout(timeoutMs, () => {
      settle({
        kind: 'failed',
        status: 504,
        reason: `the agent-gateway did not answer the CONNECT within ${timeoutMs} ms`,
      });
      stream.close(constants.NGHTTP2_CANCEL);
    });
  });
}
