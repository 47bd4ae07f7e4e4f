import type { Duplex } from 'node:stream';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';
import type { RateLimiter } from '../ratelimit/limiter.js';
import type { ThrottleSummary } from '../ratelimit/tunnel-throttle.js';
import { Tunnel, type TunnelCloseCause } from '../tunnel/tunnel.js';
import type { ConnectOutcome } from './connect-flow.js';

type DialledTunnel = Extract<ConnectOutcome, { kind: 'tunnel' }>;

/**
 * The set of live tunnels: starts each one (under its identity's rate limits when a limiter is
 * given), logs its `tunnel closed` line, and lets shutdown wait for them to finish or tear them down
 * at the deadline.
 */
export class OpenTunnels {
  private readonly live = new Set<Tunnel>();
  private idleWaiters: Array<() => void> = [];

  constructor(
    private readonly logger: Logger,
    private readonly idleTimeoutMs: number,
    private readonly limiter?: RateLimiter,
  ) {}

  get size(): number {
    return this.live.size;
  }

  /** Starts the tunnel the connect flow dialled; it now owns the upstream socket and the tunnel slot. */
  start(client: Duplex, target: DialledTunnel): Tunnel {
    const { upstream, fields, reservation } = target;
    const openedAt = Date.now();
    const tunnel = new Tunnel(client, upstream, {
      idleTimeoutMs: this.idleTimeoutMs,
      onClose: (summary) => {
        this.live.delete(tunnel);
        const throttled: ThrottleSummary | undefined = throttle?.close();
        reservation?.release();
        this.logger.info(
          {
            ...fields,
            bytes_client_to_dest: summary.bytesClientToDest,
            bytes_dest_to_client: summary.bytesDestToClient,
            close_cause: summary.cause,
            error: summary.error,
            duration_ms: Date.now() - openedAt,
            throttled_ms: throttled?.throttledMs,
            throttled_ms_client_to_dest: throttled?.clientToDestThrottledMs,
            throttled_ms_dest_to_client: throttled?.destToClientThrottledMs,
            max_held_bytes: throttled?.maxHeldBytes,
          },
          // One event name for every ending; close_cause says why (idle_timeout, aborted, ...).
          LogEvent.tunnelClosed,
        );
        if (this.live.size === 0) this.notifyIdle();
      },
    });
    const throttle =
      reservation === undefined || this.limiter === undefined
        ? undefined
        : this.limiter.attach(reservation, tunnel, (direction, bucket) =>
            // Once per tunnel, not per chunk: the tunnel closed line carries the total throttled time.
            this.logger.info(
              {
                ...fields,
                direction,
                limit: bucket.kind,
                bytes_per_second: bucket.bytesPerSecond,
                burst_bytes: bucket.burstBytes,
              },
              LogEvent.rateLimited,
            ),
          );
    if (throttle !== undefined) {
      tunnel.up.observe(throttle.up);
      tunnel.down.observe(throttle.down);
    }
    this.live.add(tunnel);
    return tunnel;
  }

  /** Resolves when no tunnel is open (immediately if none is). */
  whenEmpty(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  closeAll(cause: TunnelCloseCause): void {
    for (const tunnel of [...this.live]) tunnel.close(cause);
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
