import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Stable error codes of the admin API (and the CLI commands that call it): scripts match on these, never
 * on the message.
 */
export type AdminErrorCode =
  | 'ADMIN_UNAUTHORIZED'
  | 'ADMIN_FORBIDDEN'
  | 'ADMIN_NOT_FOUND'
  | 'ADMIN_METHOD_NOT_ALLOWED'
  | 'ADMIN_BAD_REQUEST'
  | 'ADMIN_BODY_TOO_LARGE'
  | 'ADMIN_UNSUPPORTED_MEDIA_TYPE'
  | 'ADMIN_TOO_MANY_REQUESTS'
  | 'ADMIN_UNAVAILABLE'
  | 'ADMIN_INTERNAL';

const STATUS: Record<AdminErrorCode, number> = {
  ADMIN_UNAUTHORIZED: 401,
  ADMIN_FORBIDDEN: 403,
  ADMIN_NOT_FOUND: 404,
  ADMIN_METHOD_NOT_ALLOWED: 405,
  ADMIN_BAD_REQUEST: 400,
  ADMIN_BODY_TOO_LARGE: 413,
  ADMIN_UNSUPPORTED_MEDIA_TYPE: 415,
  ADMIN_TOO_MANY_REQUESTS: 429,
  ADMIN_UNAVAILABLE: 503,
  ADMIN_INTERNAL: 500,
};

export class AdminRequestError extends Error {
  override name = 'AdminRequestError';
  constructor(
    readonly code: AdminErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Admin answers are never cached (they describe live state and may be per-user). */
const COMMON_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendText(res: ServerResponse, status: number, contentType: string, text: string): void {
  res.writeHead(status, {
    ...COMMON_HEADERS,
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

export function sendError(
  res: ServerResponse,
  error: AdminRequestError,
  headers: Record<string, string> = {},
): void {
  sendJson(res, STATUS[error.code], { error: { code: error.code, message: error.message } }, headers);
}

/** The request body as JSON (an object), at most `limit` bytes. */
export async function readJsonBody(
  req: IncomingMessage,
  limit = 16 * 1024,
): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    throw new AdminRequestError('ADMIN_BAD_REQUEST', 'send the request body as application/json');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit)
      throw new AdminRequestError('ADMIN_BODY_TOO_LARGE', `request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new AdminRequestError('ADMIN_BAD_REQUEST', 'the request body is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AdminRequestError('ADMIN_BAD_REQUEST', 'the request body must be a JSON object');
  }
  return value as Record<string, unknown>;
}
