/** Status codes and the short bodies the gateway sends (interop: reasons are logged, never sent). */
export type RejectStatus = 400 | 403 | 405 | 429 | 502 | 503;

export const STATUS_BODY: Readonly<Record<RejectStatus, string>> = {
  400: 'bad request',
  403: 'forbidden',
  405: 'method not allowed',
  429: 'too many requests',
  502: 'bad gateway',
  503: 'service unavailable',
};

const REASON_PHRASE: Readonly<Record<RejectStatus, string>> = {
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  429: 'Too Many Requests',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/**
 * The complete HTTP/1.1 response for a refused request; the connection is closed after it. `retryAfterS`
 * (whole seconds) adds `Retry-After`: a spent quota says when enough of its window will have passed.
 */
export function http1RejectResponse(status: RejectStatus, retryAfterS?: number): string {
  const body = `${STATUS_BODY[status]}\n`;
  return (
    `HTTP/1.1 ${status} ${REASON_PHRASE[status]}\r\n` +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    (retryAfterS === undefined ? '' : `Retry-After: ${retryAfterS}\r\n`) +
    'Connection: close\r\n\r\n' +
    body
  );
}

export const HTTP1_TUNNEL_ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n';
