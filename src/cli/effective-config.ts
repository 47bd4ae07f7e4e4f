import type { LoadedConfig } from '../config/load.js';
import { type IdentityLimits, type RateLimitSettings, rateLimitSettings } from '../config/rate-limit.js';
import { redactedConfig } from '../config/redact.js';

/**
 * What `check-config` prints: every setting with the value the gateway will use, secrets masked. The
 * schema fills most defaults, but `[rate_limit]` keys that inherit from one another (a download burst
 * that defaults to `burst_bytes`, an identity's table that falls back to `[rate_limit]`, the tunnel cap,
 * the quotas) are resolved by config/rate-limit.ts; the table printed here is that resolution, so what
 * is shown is what is enforced.
 */
export function effectiveConfig(loaded: LoadedConfig): Record<string, unknown> {
  const shown = redactedConfig(loaded) as Record<string, unknown>;
  return { ...shown, rate_limit: effectiveRateLimit(rateLimitSettings(loaded.config.rate_limit)) };
}

function effectiveRateLimit(settings: RateLimitSettings): Record<string, unknown> {
  const { defaults, total } = settings;
  return {
    ...identityKeys(defaults),
    total_bytes_per_second: total.bytesPerSecond,
    total_burst_bytes: total.burstBytes,
    shared: settings.shared,
    identities: Object.fromEntries(
      [...settings.identities].map(([identity, limits]) => [identity, identityKeys(limits)]),
    ),
  };
}

/** The config keys of one identity's limits (the same names in `[rate_limit]` and its identity tables). */
function identityKeys(limits: IdentityLimits): Record<string, number> {
  return {
    bytes_per_second: limits.upload.bytesPerSecond,
    burst_bytes: limits.upload.burstBytes,
    download_bytes_per_second: limits.download.bytesPerSecond,
    download_burst_bytes: limits.download.burstBytes,
    max_tunnels_per_identity: limits.maxTunnels,
    upload_quota_bytes: limits.uploadQuota.bytes,
    upload_quota_window_s: limits.uploadQuota.windowS,
    download_quota_bytes: limits.downloadQuota.bytes,
    download_quota_window_s: limits.downloadQuota.windowS,
  };
}
