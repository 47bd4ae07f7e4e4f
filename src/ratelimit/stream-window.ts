import type { BucketLimit } from '../config/rate-limit.js';

/** The smallest window HTTP/2 starts with (RFC 9113 default); below it throughput collapses. */
const MIN_WINDOW = 65_535;

/**
 * The HTTP/2 stream receive window for a session of a rate-limited identity. A throttled stream is
 * paused, but the client may still send what its window already allows, and the gateway must hold
 * it: with the default 1 MiB window that is far more than "about one read". A sixteenth of a second
 * of the identity's upload rate keeps that small while leaving room for rate × RTT of any sane
 * network, so a limited identity still reaches its rate. Unlimited identities keep `configured`.
 */
export function streamWindowForUpload(upload: readonly BucketLimit[], configured: number): number {
  let rate = 0;
  for (const limit of upload) {
    if (limit.bytesPerSecond > 0)
      rate = rate === 0 ? limit.bytesPerSecond : Math.min(rate, limit.bytesPerSecond);
  }
  if (rate === 0) return configured;
  return Math.min(configured, Math.max(MIN_WINDOW, Math.ceil(rate / 16)));
}
