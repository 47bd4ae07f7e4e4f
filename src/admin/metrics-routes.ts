import type { AdminRoute } from './admin-server.js';
import { sendText } from './http-json.js';

/** Something that renders the Prometheus text format (metrics/gateway-metrics.ts, the sidecar's). */
export interface MetricsSource {
  readonly contentType: string;
  render(): Promise<string>;
}

/**
 * `GET /metrics` for Prometheus. It needs the `read` role (the read-only token, or the admin token):
 * identities, destinations' error kinds and traffic volumes are not for anyone who can reach the port.
 * Prometheus sends the token with `authorization: { credentials_file: … }` in its scrape config.
 */
export function metricsRoutes(source: MetricsSource): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/metrics',
      access: 'read',
      handle: async ({ res }) => sendText(res, 200, source.contentType, await source.render()),
    },
  ];
}
