/**
 * Shared shapes of the metrics: Prometheus wants seconds, the gateway measures monotonic milliseconds.
 */

/** Decision and phase latencies: a cached allow takes ~50 µs, a registry query ~0.2-2 ms, a dial more. */
export const LATENCY_BUCKETS_S = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Tunnel lifetimes: from a quick HTTPS request to the 15-minute idle timeout and beyond. */
export const DURATION_BUCKETS_S = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14_400, 86_400];

export function seconds(ms: number): number {
  return ms > 0 ? ms / 1000 : 0;
}

/** Monotonic milliseconds, the clock of every phase time on a ConnectAttempt and a TunnelSession. */
export const monotonicMs = (): number => performance.now();
