import type { Clock } from '../time/clock.js';
import type { Bucket } from './bucket.js';
import {
  type DirectionName,
  type Throttleable,
  ThrottledDirection,
  type ThrottleListener,
} from './direction.js';

/** What a closed tunnel reports about throttling (fields of its `tunnel closed` line). */
export interface ThrottleSummary {
  /** Time during which at least one direction was held. */
  readonly throttledMs: number;
  readonly clientToDestThrottledMs: number;
  readonly destToClientThrottledMs: number;
  /** Most bytes the gateway held for either direction while throttled. */
  readonly maxHeldBytes: number;
}

/** Called once per tunnel, the first time either direction is held ("rate limited" is logged once). */
export type FirstThrottleHandler = (direction: DirectionName, by: Bucket) => void;

export interface ThrottleBuckets {
  readonly upload: readonly [Bucket] | readonly [Bucket, Bucket];
  readonly download: readonly [Bucket];
}

/** Both directions of one tunnel, and the tunnel-level view of them. */
export class TunnelThrottle implements ThrottleListener {
  readonly up: ThrottledDirection;
  readonly down: ThrottledDirection;
  private heldDirections = 0;
  private heldSince = 0;
  private throttledMs = 0;
  private announced = false;
  private closed: ThrottleSummary | undefined;

  constructor(
    relays: { readonly up: Throttleable; readonly down: Throttleable },
    buckets: ThrottleBuckets,
    private readonly clock: Clock,
    private readonly onFirstThrottle: FirstThrottleHandler,
  ) {
    this.up = new ThrottledDirection('client_to_dest', relays.up, buckets.upload, clock, this);
    this.down = new ThrottledDirection('dest_to_client', relays.down, buckets.download, clock, this);
  }

  onHeld(direction: ThrottledDirection, by: Bucket): void {
    if (this.heldDirections++ === 0) this.heldSince = this.clock.now();
    if (!this.announced) {
      this.announced = true;
      this.onFirstThrottle(direction.name, by);
    }
  }

  onReleased(_direction: ThrottledDirection): void {
    if (this.heldDirections === 0) return;
    if (--this.heldDirections === 0) this.throttledMs += this.clock.now() - this.heldSince;
  }

  /** Detaches from every bucket (idempotent) and returns the totals. */
  close(): ThrottleSummary {
    if (this.closed === undefined) {
      this.up.close();
      this.down.close();
      this.closed = {
        throttledMs: Math.round(this.throttledMs),
        clientToDestThrottledMs: Math.round(this.up.throttledMs),
        destToClientThrottledMs: Math.round(this.down.throttledMs),
        maxHeldBytes: Math.max(this.up.maxHeldBytes, this.down.maxHeldBytes),
      };
    }
    return this.closed;
  }
}
