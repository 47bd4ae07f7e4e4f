import type { Clock } from '../time/clock.js';
import { BucketTicket, type BucketWaiter, type TokenBucket } from './bucket.js';

/** What throttling needs from a one-way relay (tunnel/one-way.ts satisfies it). */
export interface Throttleable {
  /** Stop reading the source until as many release() calls. */
  hold(): void;
  release(): void;
  /** Bytes the gateway holds for this direction: read from the source, not yet passed to the kernel. */
  bufferedBytes(): number;
}

export type DirectionName = 'client_to_dest' | 'dest_to_client';

/** Told when a direction starts and stops being held by any of its buckets. */
export interface ThrottleListener {
  onHeld(direction: ThrottledDirection, by: TokenBucket): void;
  onReleased(direction: ThrottledDirection): void;
}

/**
 * One direction of one tunnel as the limiter sees it: every chunk is counted in each of its buckets
 * (an identity's upload bucket and the all-identity total, or the identity's download bucket), and
 * the relay is held while any of them holds it.
 */
export class ThrottledDirection implements BucketWaiter {
  /** Time spent held, up to the last release. */
  throttledMs = 0;
  /** Most bytes the gateway held for this direction at a hold or release (see Throttleable). */
  maxHeldBytes = 0;
  private holds = 0;
  private heldSince = 0;
  private readonly first: BucketTicket;
  private readonly second: BucketTicket | undefined;

  constructor(
    readonly name: DirectionName,
    private readonly relay: Throttleable,
    buckets: readonly [TokenBucket] | readonly [TokenBucket, TokenBucket],
    private readonly clock: Clock,
    private readonly listener: ThrottleListener,
  ) {
    this.first = new BucketTicket(buckets[0], this);
    this.second = buckets[1] === undefined ? undefined : new BucketTicket(buckets[1], this);
  }

  get held(): boolean {
    return this.holds > 0;
  }

  /** Takes its place in each bucket's queue before the first read if others are waiting there. */
  join(): void {
    this.first.bucket.join(this.first);
    this.second?.bucket.join(this.second);
  }

  /** Per-chunk path: called by the relay after it forwarded `bytes`. */
  onChunk(bytes: number): void {
    const a = this.first;
    const b = this.second;
    // Rate limiting off (the default) costs two comparisons and no clock read.
    if (!a.bucket.limited && (b === undefined || !b.bucket.limited)) return;
    const now = this.clock.now();
    a.bucket.take(a, bytes, now);
    b?.bucket.take(b, bytes, now);
  }

  hold(by: TokenBucket): void {
    if (this.holds++ > 0) return;
    this.heldSince = this.clock.now();
    this.relay.hold();
    this.sampleHeldBytes();
    this.listener.onHeld(this, by);
  }

  release(_by: TokenBucket): void {
    if (this.holds === 0) return;
    if (--this.holds > 0) return;
    this.throttledMs += this.clock.now() - this.heldSince;
    // Sampled before resuming: this is when the most has piled up (an HTTP/2 stream keeps receiving
    // until its flow-control window is used up).
    this.sampleHeldBytes();
    this.relay.release();
    this.listener.onReleased(this);
  }

  /** The tunnel is gone: leave every bucket's queue and close the books. */
  close(): void {
    this.first.bucket.leave(this.first);
    this.second?.bucket.leave(this.second);
    if (this.holds > 0) {
      this.throttledMs += this.clock.now() - this.heldSince;
      this.holds = 0;
      this.listener.onReleased(this);
    }
  }

  private sampleHeldBytes(): void {
    const held = this.relay.bufferedBytes();
    if (held > this.maxHeldBytes) this.maxHeldBytes = held;
  }
}
