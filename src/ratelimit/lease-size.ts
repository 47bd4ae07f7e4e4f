import type { BucketSpec } from '../config/rate-limit.js';

/**
 * L, the most one gateway holds of an identity's shared bucket at a time: about 100 ms of the rate, so the
 * bound `rate × W + burst + G × L` stays close to `rate × W + burst`, and lease calls stay near 10–20 per
 * second per busy identity and gateway whatever the rate.
 *
 * - At least 64 KiB: one TCP read, so no chunk is ever split for lack of lease, and a slow identity does
 *   not make a call per chunk.
 * - At most 16 MiB: 100 ms of 160 MiB/s; beyond that the calls grow with the rate instead (measured:
 *   docs/BENCHMARKS.md).
 * - Never more than the burst: the shared bucket never holds more than that to grant.
 * - An identity with a quota but no rate: 1 MiB, which bounds the quota's error to one MiB per gateway.
 */
export function leaseSize(spec: BucketSpec): number {
  if (spec.bytesPerSecond > 0) {
    const tenth = Math.ceil(spec.bytesPerSecond / 10);
    return Math.max(1, Math.min(spec.burstBytes, Math.min(MAX_LEASE, Math.max(MIN_LEASE, tenth))));
  }
  return QUOTA_ONLY_LEASE;
}

export const MIN_LEASE = 64 * 1024;
export const MAX_LEASE = 16 * 1024 * 1024;
export const QUOTA_ONLY_LEASE = 1024 * 1024;
