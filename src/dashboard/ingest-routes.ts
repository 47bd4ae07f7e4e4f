import type { IncomingMessage } from 'node:http';
import { gunzip } from 'node:zlib';
import type { AdminRoute } from '../admin/admin-server.js';
import type { TokenAuthority } from '../admin/auth.js';
import { AdminRequestError, sendError, sendJson } from '../admin/http-json.js';
import type { DashboardHub } from './hub.js';
import { logsToRecords, type OtlpResult, tracesToRecords } from './otlp.js';

/** An export larger than this (compressed as sent, or once unzipped) is refused with 413. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

/**
 * `POST /v1/traces` and `POST /v1/logs`: OTLP/HTTP with the JSON encoding, gzip or not, as a collector's
 * `otlphttp` exporter sends it with `encoding: json` and an `Authorization: Bearer <ingest token>` header.
 * Unlike the original dashboard this accepts nothing without that token, and it never takes the place of
 * the gateways' own feed: ingested records are marked with their source (`otlp:<service instance>`).
 */
export function ingestRoutes(deps: {
  readonly hub: DashboardHub;
  readonly ingest: TokenAuthority;
}): AdminRoute[] {
  const route = (path: string, parse: (body: unknown) => OtlpResult, rejectedKey: string): AdminRoute => ({
    method: 'POST',
    path,
    access: 'public',
    handle: async ({ req, res }) => {
      if (deps.ingest.roleOf(req.headers.authorization) === undefined) {
        sendError(
          res,
          new AdminRequestError('ADMIN_UNAUTHORIZED', 'send Authorization: Bearer <ingest token>'),
          {
            'www-authenticate': 'Bearer realm="agent-gateway dashboard ingest"',
          },
        );
        return;
      }
      if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
        throw new AdminRequestError(
          'ADMIN_UNSUPPORTED_MEDIA_TYPE',
          'send OTLP/HTTP JSON (Content-Type: application/json; for a collector: encoding: json); protobuf is not accepted',
        );
      }
      const body = await readBody(req);
      let value: unknown;
      try {
        value = JSON.parse(body.toString('utf8'));
      } catch {
        throw new AdminRequestError('ADMIN_BAD_REQUEST', 'the body is not valid JSON');
      }
      const result = parse(value);
      for (const { source, record } of result.records) deps.hub.add(source, record);
      sendJson(
        res,
        200,
        result.malformed === 0
          ? {}
          : {
              partialSuccess: {
                [rejectedKey]: result.malformed,
                errorMessage: 'records without byte counts',
              },
            },
      );
    },
  });
  return [
    route('/v1/traces', tracesToRecords, 'rejectedSpans'),
    route('/v1/logs', logsToRecords, 'rejectedLogRecords'),
  ];
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES)
      throw new AdminRequestError('ADMIN_BODY_TOO_LARGE', `export larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const raw = Buffer.concat(chunks);
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding === 'identity') return raw;
  if (encoding !== 'gzip') {
    throw new AdminRequestError(
      'ADMIN_UNSUPPORTED_MEDIA_TYPE',
      `content-encoding ${encoding} is not accepted (gzip is)`,
    );
  }
  return new Promise((resolve, reject) =>
    // maxOutputLength: a small compressed body must not unzip into gigabytes.
    gunzip(raw, { maxOutputLength: MAX_BODY_BYTES }, (error, out) =>
      error
        ? reject(
            new AdminRequestError(
              (error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
                ? 'ADMIN_BODY_TOO_LARGE'
                : 'ADMIN_BAD_REQUEST',
              `cannot unzip the export: ${error.message}`,
            ),
          )
        : resolve(out),
    ),
  );
}
