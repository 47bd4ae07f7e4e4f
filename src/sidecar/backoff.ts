/**
 * Delay before the next attempt to reach the gateway after `failures` consecutive failures:
 * exponential from `initialMs`, capped at `maxMs`, with "equal jitter" (half fixed, half random) so
 * that the sidecars of many agents do not all knock at a restarted gateway in the same millisecond.
 */
export function backoffDelayMs(
  failures: number,
  opts: { initialMs: number; maxMs: number },
  random: () => number = Math.random,
): number {
  if (failures <= 0) return 0;
  const ceiling = Math.min(opts.maxMs, opts.initialMs * 2 ** Math.min(failures - 1, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
