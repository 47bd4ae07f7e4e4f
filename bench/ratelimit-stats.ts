/**
 * Turns the arrival log of one rate-limit case (every chunk the receiving end got: when, which
 * tunnel, how many bytes) into the numbers of the table in docs/BENCHMARKS.md.
 */

export class ArrivalLog {
  readonly times: number[] = [];
  readonly tunnels: number[] = [];
  readonly bytes: number[] = [];

  record(time: number, tunnel: number, bytes: number): void {
    this.times.push(time);
    this.tunnels.push(tunnel);
    this.bytes.push(bytes);
  }
}

export interface CaseStats {
  /** Bytes per second between the first arrival after the warm-up and the last arrival. */
  readonly steadyRate: number;
  /** From the moment the clients started sending (or asking) to the last arrival, burst included. */
  readonly wholeRate: number;
  readonly totalBytes: number;
  /** (max − min) / mean of the tunnels' bytes in the steady window. */
  readonly spread: number;
  /** max − min of the tunnels' bytes in the steady window. */
  readonly spreadBytes: number;
  readonly steadySeconds: number;
}

/**
 * Steady state is measured from the start of one released chunk to the start of another, counting the
 * bytes that arrived in between: the limiter releases a chunk when the previous one is paid for, so
 * such a window holds whole chunks and their exact cost. (A chunk can reach the receiver as several
 * reads, e.g. a 64 KiB TCP read as four TLS records: cutting inside one would overstate low rates.)
 * A chunk start is an arrival after a pause of at least {@link CHUNK_GAP_MS}; at high rates there are
 * no such pauses, and cutting anywhere costs well under 0.1%.
 */
export function caseStats(
  log: ArrivalLog,
  startedAt: number,
  warmUpSeconds: number,
  tunnels: number,
): CaseStats {
  const { times, bytes } = log;
  const n = times.length;
  const totalBytes = bytes.reduce((a, b) => a + b, 0);
  if (n < 3) return { steadyRate: 0, wholeRate: 0, totalBytes, spread: 0, spreadBytes: 0, steadySeconds: 0 };
  const wholeRate = totalBytes / ((times[n - 1]! - startedAt) / 1000);
  const warmEnd = startedAt + warmUpSeconds * 1000;
  const starts: number[] = [];
  for (let i = 1; i < n; i++) {
    if (times[i]! >= warmEnd && times[i]! - times[i - 1]! >= CHUNK_GAP_MS) starts.push(i);
  }
  let from: number;
  let to: number;
  const span = times[n - 1]! - warmEnd;
  // Chunk starts are used only when they frame most of the measured part (a few sparse arrivals can
  // put two of them close together, and a window of milliseconds says nothing).
  if (starts.length >= 2 && times[starts[starts.length - 1]!]! - times[starts[0]!]! >= span / 2) {
    from = starts[0]!;
    to = starts[starts.length - 1]!;
  } else {
    from = Math.min(
      n - 2,
      Math.max(
        0,
        times.findIndex((t) => t >= warmEnd),
      ),
    );
    to = n - 1;
  }
  const perTunnel = new Array<number>(tunnels).fill(0);
  let steadyBytes = 0;
  for (let i = from; i < to; i++) {
    steadyBytes += bytes[i]!;
    perTunnel[log.tunnels[i]!]! += bytes[i]!;
  }
  if (process.env['BENCH_VERBOSE']) {
    process.stderr.write(`per tunnel: ${perTunnel.map((b) => Math.round(b / 1024)).join(' ')} KiB\n`);
  }
  const steadySeconds = (times[to]! - times[from]!) / 1000;
  const mean = perTunnel.reduce((a, b) => a + b, 0) / tunnels;
  const spreadBytes = Math.max(...perTunnel) - Math.min(...perTunnel);
  const spread = mean > 0 ? spreadBytes / mean : 0;
  return {
    steadyRate: steadyBytes / steadySeconds,
    wholeRate,
    totalBytes,
    spread,
    spreadBytes,
    steadySeconds,
  };
}

/** A pause between arrivals this long means the limiter held the senders: the next arrival starts a chunk. */
const CHUNK_GAP_MS = 2;

export function percentError(achieved: number, configured: number): string {
  const e = (achieved / configured - 1) * 100;
  return `${e >= 0 ? '+' : '−'}${Math.abs(e).toFixed(2)}%`;
}

export function formatRate(bytesPerSecond: number): string {
  if (bytesPerSecond >= 1024 * 1024) return `${+(bytesPerSecond / 1024 / 1024).toFixed(2)} MiB/s`;
  return `${+(bytesPerSecond / 1024).toFixed(1)} KiB/s`;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${+(bytes / 1024 / 1024).toFixed(2)} MiB`;
  return `${+(bytes / 1024).toFixed(1)} KiB`;
}
