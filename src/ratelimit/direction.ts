import type { Clock } from '../time/clock.js';
import { type Bucket, BucketTicket, type BucketWaiter } from './bucket.js';

/** What throttling needs from a one-way relay (tunnel/one-way.ts satisfies it). */
export interface Throttleable {
  /** `bytes` more of the chunk the relay holds may go (see ChunkGate.admit). */
  granted(bytes: number): void;
  /** Bytes the gateway holds for this direction: read from the source, not yet passed to the kernel. */
  bufferedBytes(): number;
}

export type DirectionName = 'client_to_dest' | 'dest_to_client';

/** Told when a direction starts and stops being held by any of its buckets. */
export interface ThrottleListener {
  onHeld(direction: ThrottledDirection, by: Bucket): void;
  onReleased(direction: ThrottledDirection): void;
}

/**
 * One direction of one tunnel as the limiter sees it: the relay's gate. Every chunk is paid in each of
 * its buckets (an identity's upload bucket and the all-identity total, or the identity's download
 * bucket) before it is forwarded. A piece is taken from the first bucket, then the second; while the
 * second is waited for, the first's tokens stay set aside for it (given back if the tunnel goes).
 */
export class ThrottledDirection implements BucketWaiter {
  /** Time spent held, up to the last release. */
  throttledMs = 0;
  /** Most bytes the gateway held for this direction at a hold or release (see Throttleable). */
  maxHeldBytes = 0;
  private heldSince = 0;
  /** 0: not held; 1: waiting for the first bucket; 2: paid in the first, waiting for the second. */
  private stage = 0;
  /** The piece being paid for. */
  private piece = 0;
  private readonly first: BucketTicket;
  private readonly second: BucketTicket | undefined;

  constructor(
    readonly name: DirectionName,
    private readonly relay: Throttleable,
    buckets: readonly [Bucket] | readonly [Bucket, Bucket],
    private readonly clock: Clock,
    private readonly listener: ThrottleListener,
  ) {
    this.first = new BucketTicket(buckets[0], this);
    this.second = buckets[1] === undefined ? undefined : new BucketTicket(buckets[1], this);
  }

  get held(): boolean {
    return this.stage !== 0;
  }

  /** Per-chunk path (the relay's ChunkGate): how many of `bytes` may be forwarded now. */
  admit(bytes: number): number {
    const a = this.first.bucket;
    const second = this.second;
    const aOn = a.limited;
    const bOn = second?.bucket.limited === true;
    // Rate limiting off (the default) costs two comparisons and no clock read.
    if (!aOn && !bOn) return bytes;
    let piece = bytes;
    if (aOn && a.capacity < piece) piece = a.capacity;
    if (bOn && second.bucket.capacity < piece) piece = second.bucket.capacity;
    const now = this.clock.now();
    this.piece = piece;
    if (aOn && !a.take(this.first, piece, now)) {
      this.hold(1, a);
      return 0;
    }
    if (bOn && !second.bucket.take(second, piece, now)) {
      this.hold(2, second.bucket);
      return 0;
    }
    return piece;
  }

  granted(bucket: Bucket, bytes: number): void {
    if (this.stage === 0) return;
    const now = this.clock.now();
    const second = this.second;
    if (this.stage === 1 && bucket === this.first.bucket) {
      this.piece = bytes;
      if (second?.bucket.limited === true && !second.bucket.take(second, bytes, now)) {
        this.stage = 2;
        return;
      }
    } else if (this.stage === 2 && bucket === second?.bucket) {
      // The second bucket may grant less than asked (its limits changed): the rest goes back.
      if (bytes < this.piece) this.first.bucket.giveBack(this.piece - bytes, now);
      this.piece = bytes;
    } else {
      return;
    }
    this.release(now);
    this.relay.granted(this.piece);
  }

  /** The tunnel is gone: leave every bucket's queue, give back a piece paid but not sent, close the books. */
  close(): void {
    const now = this.clock.now();
    this.first.bucket.leave(this.first, now);
    this.second?.bucket.leave(this.second, now);
    if (this.stage === 2) this.first.bucket.giveBack(this.piece, now);
    if (this.stage !== 0) {
      this.stage = 0;
      this.throttledMs += now - this.heldSince;
      this.listener.onReleased(this);
    }
  }

  private hold(stage: 1 | 2, by: Bucket): void {
    this.stage = stage;
    this.heldSince = this.clock.now();
    this.sampleHeldBytes();
    this.listener.onHeld(this, by);
  }

  private release(now: number): void {
    this.stage = 0;
    this.throttledMs += now - this.heldSince;
    // Sampled before the piece goes: this is when the most has piled up (an HTTP/2 stream keeps
    // receiving until its flow-control window is used up).
    this.sampleHeldBytes();
    this.listener.onReleased(this);
  }

  private sampleHeldBytes(): void {
    const held = this.relay.bufferedBytes();
    if (held > this.maxHeldBytes) this.maxHeldBytes = held;
  }
}
