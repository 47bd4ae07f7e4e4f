import { type IdentityLimits, limitsFor, type RateLimitSettings } from '../config/rate-limit.js';
import type { AdminRoute } from './admin-server.js';
import { AdminRequestError, sendJson } from './http-json.js';

/** At most this many identities per request (the query string is attacker-sized otherwise). */
const MAX_IDENTITIES = 500;

/**
 * What the gateway enforces for an identity beyond its rates, for the dashboard's bandwidth chart.
 * Byte quotas over long windows (issue 13) plug in here: a source that answers per identity, merged into
 * the `/v1/limits` answer as `quota`; `null` means this gateway enforces none.
 */
export interface QuotaSource {
  /** The identity's upload quota and what its window holds now; null without a quota (or store). */
  quotaFor(identity: string): Promise<QuotaView | null>;
}

export interface QuotaView {
  readonly upload_quota_bytes: number;
  readonly upload_used_bytes: number;
  readonly window_s: number;
}

/**
 * `GET /v1/limits?identity=A&identity=B` (read role): the rate limits in force right now (after any
 * SIGHUP) for those identities, and the defaults. The dashboard draws each identity's bandwidth against
 * them; the limits are the gateway's own, since only it knows its config.
 */
export function limitRoutes(settings: () => RateLimitSettings, quotas?: QuotaSource): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/v1/limits',
      access: 'read',
      handle: async ({ res, url }) => {
        const identities = url.searchParams.getAll('identity');
        if (identities.length > MAX_IDENTITIES) {
          throw new AdminRequestError(
            'ADMIN_BAD_REQUEST',
            `ask for at most ${MAX_IDENTITIES} identities at once`,
          );
        }
        const current = settings();
        const answer: Record<string, unknown> = {};
        for (const identity of identities) {
          answer[identity] = {
            ...limitsJson(limitsFor(current, identity)),
            quota: (await quotas?.quotaFor(identity).catch(() => null)) ?? null,
          };
        }
        sendJson(res, 200, {
          defaults: limitsJson(current.defaults),
          total_upload_bytes_per_second: current.total.bytesPerSecond,
          identities: answer,
        });
      },
    },
  ];
}

/** The config's key names, so an operator recognizes them; 0 means unlimited, as in the config. */
function limitsJson(l: IdentityLimits): Record<string, number> {
  return {
    bytes_per_second: l.upload.bytesPerSecond,
    burst_bytes: l.upload.burstBytes,
    download_bytes_per_second: l.download.bytesPerSecond,
    download_burst_bytes: l.download.burstBytes,
    max_tunnels_per_identity: l.maxTunnels,
  };
}
