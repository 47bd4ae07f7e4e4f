import type { HrTime } from '@opentelemetry/api';

/**
 * Span times from the gateway's monotonic milliseconds (performance.now()), all on one time base.
 *
 * Not left to the SDK: given a performance.now() number, each span corrects it by its own
 * Date.now()-based offset, taken when that span is created, so a parent and the children made a moment
 * later disagree by up to a millisecond (a child then seems to end after its parent). One offset, taken
 * once, keeps every span of the process consistent with the others; its error against the wall clock is
 * that of Date.now() at start (~1 ms).
 */
const originMs = Date.now() - performance.now();
const originS = Math.floor(originMs / 1000);
const originNs = Math.round((originMs - originS * 1000) * 1e6);

export function hrTimeOf(monotonicMs: number): HrTime {
  const s = Math.floor(monotonicMs / 1000);
  let ns = originNs + Math.round((monotonicMs - s * 1000) * 1e6);
  let seconds = originS + s;
  if (ns >= 1e9) {
    seconds += Math.floor(ns / 1e9);
    ns %= 1e9;
  }
  return [seconds, ns];
}
