import { formatKeyPath } from './errors.js';
import type { GatewayConfig } from './schema.js';

/**
 * What the `[rate_limit]` table means: every identity's limits with inheritance applied, and the checks
 * that span keys. In config/ because the loader runs those checks beside the schema's; the limiter, the
 * shared budgets and the CLI read the resolved settings from here.
 */

/** One token bucket's parameters; a rate of 0 means unlimited. */
export interface BucketLimit {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
}

/** A byte quota over a sliding window; 0 bytes = off. Kept in the shared store (needs `shared = true`). */
export interface QuotaLimit {
  readonly bytes: number;
  readonly windowS: number;
}

/** A bucket's rate and burst, with the quota its leases are also charged to (shared buckets only). */
export interface BucketSpec extends BucketLimit {
  readonly quota?: QuotaLimit;
}

/** Everything the gateway enforces for one identity. */
export interface IdentityLimits {
  /** client → destination. */
  readonly upload: BucketLimit;
  /** destination → client. */
  readonly download: BucketLimit;
  /** Concurrent tunnels (including CONNECTs still being decided); 0 = unlimited. */
  readonly maxTunnels: number;
  readonly uploadQuota: QuotaLimit;
  readonly downloadQuota: QuotaLimit;
}

/** The `[rate_limit]` table resolved: every identity's limits with inheritance applied. */
export interface RateLimitSettings {
  /** For identities without a table of their own under `[rate_limit.identities]`. */
  readonly defaults: IdentityLimits;
  readonly identities: ReadonlyMap<string, IdentityLimits>;
  /** Upload across all identities together. */
  readonly total: BucketLimit;
  /** Buckets, quotas and tunnel caps live in the registry database, shared by every gateway process. */
  readonly shared: boolean;
}

/**
 * 256 concurrent tunnels: one HTTP/2 connection at the default `h2_max_concurrent_streams`, far above
 * what a browser or package manager opens (6–64), and low enough that one identity cannot hold the
 * gateway's sockets and memory (each tunnel may buffer about one chunk, or one stream window on HTTP/2).
 */
export const DEFAULT_MAX_TUNNELS_PER_IDENTITY = 256;
/** The schema's default for `burst_bytes`, repeated for raw (unvalidated) tables. */
const DEFAULT_BURST_BYTES = 1_048_576;
/** A day: the upload-limit argument (weights are far larger than legitimate output) needs long windows. */
export const DEFAULT_QUOTA_WINDOW_S = 86_400;

export type RateLimitTable = GatewayConfig['rate_limit'];

export function rateLimitSettings(table: RateLimitTable): RateLimitSettings {
  const resolved = resolveTable(table);
  return {
    defaults: toLimits(resolved.defaults),
    identities: new Map(resolved.identities.map(([name, r]) => [name, toLimits(r)])),
    total: { bytesPerSecond: resolved.total.rate.value, burstBytes: resolved.total.burst.value },
    shared: table.shared === true,
  };
}

/** The upload (identity bucket, with its quota) and download specs of an identity's limits. */
export function uploadSpec(limits: IdentityLimits): BucketSpec {
  return { ...limits.upload, quota: limits.uploadQuota };
}

export function downloadSpec(limits: IdentityLimits): BucketSpec {
  return { ...limits.download, quota: limits.downloadQuota };
}

/** True when some byte of this identity is limited (a rate or a quota in either direction). */
export function bytesLimited(limits: IdentityLimits): boolean {
  return (
    limits.upload.bytesPerSecond > 0 ||
    limits.download.bytesPerSecond > 0 ||
    limits.uploadQuota.bytes > 0 ||
    limits.downloadQuota.bytes > 0
  );
}

export function limitsFor(settings: RateLimitSettings, identity: string): IdentityLimits {
  return settings.identities.get(identity) ?? settings.defaults;
}

export interface RateLimitProblem {
  readonly key: string;
  readonly message: string;
}

/**
 * Checks that span keys: a rate with a burst of 0 (a bucket that holds nothing passes nothing, so the
 * tunnel would hang). Runs on the raw TOML table too, so it reports alongside schema errors; values of
 * the wrong type count as absent here because the schema already reports them.
 */
export function rateLimitProblems(table: unknown): RateLimitProblem[] {
  if (!isTable(table)) return [];
  const resolved = resolveTable(table);
  const problems: RateLimitProblem[] = [];
  const seen = new Set<string>();
  const check = (pair: SourcedLimit): void => {
    const { rate, burst } = pair;
    if (rate.value === 0 || burst.value > 0) return;
    const id = `${rate.key} ${burst.key}`;
    if (seen.has(id)) return;
    seen.add(id);
    if (parentOf(burst.key) === parentOf(rate.key)) {
      problems.push({ key: burst.key, message: `must be > 0 while ${rate.key} is set; ${BURST_HINT}` });
    } else {
      problems.push({
        key: rate.key,
        message: `is set but the burst it uses, ${burst.key}, is 0; set a burst > 0 next to it; ${BURST_HINT}`,
      });
    }
  };
  const identities = table['identities'];
  if (isTable(identities) && Object.hasOwn(identities, '')) {
    problems.push({
      key: formatKeyPath([ROOT, 'identities', '']),
      message: 'an identity name must not be empty (identities are never empty strings)',
    });
  }
  const shared = table['shared'] === true;
  for (const r of [resolved.defaults, ...resolved.identities.map(([, r]) => r)]) {
    check(r.upload);
    check(r.download);
    if (!shared) {
      for (const quota of [r.uploadQuota, r.downloadQuota]) {
        if (quota.bytes.value === 0 || seen.has(quota.bytes.key)) continue;
        seen.add(quota.bytes.key);
        problems.push({
          key: quota.bytes.key,
          message:
            'needs rate_limit.shared = true: a quota must outlive restarts and hold across gateways, so it ' +
            'is kept in the registry database (agent-gateway migrate adds its tables)',
        });
      }
    }
  }
  check(resolved.total);
  return problems;
}

/**
 * Why `server.workers` processes cannot enforce this `[rate_limit]` table, or undefined: without
 * `shared = true` each process keeps its own buckets and tunnel counts, so every limit would be
 * multiplied by the number of workers.
 */
export function workersProblem(table: unknown, workers: number): string | undefined {
  if (workers <= 1 || !isTable(table) || table['shared'] === true) return undefined;
  const resolved = resolveTable(table);
  const limited = (r: SourcedIdentity): boolean =>
    r.upload.rate.value > 0 ||
    r.download.rate.value > 0 ||
    r.maxTunnels.value > 0 ||
    r.uploadQuota.bytes.value > 0 ||
    r.downloadQuota.bytes.value > 0;
  const any =
    resolved.total.rate.value > 0 ||
    limited(resolved.defaults) ||
    resolved.identities.some(([, r]) => limited(r));
  if (!any) return undefined;
  return (
    `${workers} workers would each enforce [rate_limit] on their own (${workers}x every rate and tunnel cap): ` +
    'set rate_limit.shared = true so that they share one budget, or set workers = 1 ' +
    '(max_tunnels_per_identity defaults to 256, so it counts as a limit unless set to 0)'
  );
}

const BURST_HINT =
  'the burst is how many bytes may pass at once after a pause (65536, one socket read, or more is usual)';

/** A value and the key path it came from ('' = built-in default), so messages name the right key. */
interface Sourced {
  readonly value: number;
  readonly key: string;
}

interface SourcedLimit {
  readonly rate: Sourced;
  readonly burst: Sourced;
}

interface SourcedQuota {
  readonly bytes: Sourced;
  readonly windowS: Sourced;
}

interface SourcedIdentity {
  readonly upload: SourcedLimit;
  readonly download: SourcedLimit;
  readonly maxTunnels: Sourced;
  readonly uploadQuota: SourcedQuota;
  readonly downloadQuota: SourcedQuota;
}

type Table = Readonly<Record<string, unknown>>;

const ROOT = 'rate_limit';

/**
 * The one place that says which key wins: an identity's own key, then `[rate_limit]`'s, then the
 * default. Download and total buckets without a burst of their own use `burst_bytes` (the identity's,
 * if it sets one).
 */
function resolveTable(table: Table): {
  defaults: SourcedIdentity;
  identities: Array<[string, SourcedIdentity]>;
  total: SourcedLimit;
} {
  const rawIdentities = table['identities'];
  const identities: Array<[string, SourcedIdentity]> = [];
  if (isTable(rawIdentities)) {
    for (const [name, own] of Object.entries(rawIdentities)) {
      if (isTable(own)) {
        identities.push([name, resolveIdentity(table, own, formatKeyPath([ROOT, 'identities', name]))]);
      }
    }
  }
  const burst = first(at(table, ROOT, 'burst_bytes'), { value: DEFAULT_BURST_BYTES, key: '' });
  return {
    defaults: resolveIdentity(table, undefined, ROOT),
    identities,
    total: {
      rate: first(at(table, ROOT, 'total_bytes_per_second'), { value: 0, key: '' }),
      burst: first(at(table, ROOT, 'total_burst_bytes'), burst),
    },
  };
}

function resolveIdentity(root: Table, own: Table | undefined, ownPath: string): SourcedIdentity {
  const pick = (key: string, fallback: Sourced): Sourced =>
    first(own === undefined ? undefined : at(own, ownPath, key), at(root, ROOT, key), fallback);
  const burst = pick('burst_bytes', { value: DEFAULT_BURST_BYTES, key: '' });
  return {
    upload: { rate: pick('bytes_per_second', { value: 0, key: '' }), burst },
    download: {
      rate: pick('download_bytes_per_second', { value: 0, key: '' }),
      burst: pick('download_burst_bytes', burst),
    },
    maxTunnels: pick('max_tunnels_per_identity', { value: DEFAULT_MAX_TUNNELS_PER_IDENTITY, key: '' }),
    uploadQuota: {
      bytes: pick('upload_quota_bytes', { value: 0, key: '' }),
      windowS: pick('upload_quota_window_s', { value: DEFAULT_QUOTA_WINDOW_S, key: '' }),
    },
    downloadQuota: {
      bytes: pick('download_quota_bytes', { value: 0, key: '' }),
      windowS: pick('download_quota_window_s', { value: DEFAULT_QUOTA_WINDOW_S, key: '' }),
    },
  };
}

function toLimits(r: SourcedIdentity): IdentityLimits {
  return {
    upload: { bytesPerSecond: r.upload.rate.value, burstBytes: r.upload.burst.value },
    download: { bytesPerSecond: r.download.rate.value, burstBytes: r.download.burst.value },
    maxTunnels: r.maxTunnels.value,
    uploadQuota: { bytes: r.uploadQuota.bytes.value, windowS: r.uploadQuota.windowS.value },
    downloadQuota: { bytes: r.downloadQuota.bytes.value, windowS: r.downloadQuota.windowS.value },
  };
}

function at(table: Table, path: string, key: string): Sourced | undefined {
  const value = table[key];
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
    ? { value, key: `${path}.${key}` }
    : undefined;
}

function first(...candidates: Array<Sourced | undefined>): Sourced {
  for (const c of candidates) if (c !== undefined) return c;
  throw new Error('internal error: no fallback value');
}

function parentOf(key: string): string {
  return key.slice(0, key.lastIndexOf('.'));
}

function isTable(value: unknown): value is Table {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}
