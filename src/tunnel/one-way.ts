import type { Duplex } from 'node:stream';

/**
 * Decides, before a chunk is forwarded, how much of it may go now (a rate limiter). Asked once per
 * chunk on the hot path, so it answers with a number, never a promise.
 */
export interface ChunkGate {
  /**
   * `bytes` have been read and wait to be forwarded. Returns how many of them (from the front) may go now.
   * Fewer than `bytes` but more than 0: the relay forwards that piece and asks again for the rest. 0: the
   * relay keeps the bytes and stops reading; the gate calls {@link OneWay.granted} once some may go.
   */
  admit(bytes: number): number;
}

/**
 * Moves bytes from one side of a tunnel to the other and counts them.
 *
 * Hand-written rather than `stream.pipeline` because a tunnel needs half-close (the source's end
 * becomes the sink's FIN, the other direction keeps flowing; pipeline tears both down) and because
 * this is the per-chunk hot path: the listeners are bound once per tunnel, so a chunk costs one
 * write call and no allocation. Backpressure: when the sink's buffer is full the source is paused
 * until the sink drains, so at most one chunk per direction waits in the gateway.
 *
 * With a gate (a rate limit), a chunk is forwarded only once the gate has admitted it: one that the
 * budget does not cover yet stays here, the source stops reading, and the chunk goes when the gate says
 * so. Counting before forwarding is what makes `bytes ≤ rate × W + burst` hold for every window W, even
 * for many tunnels released at once; a chunk larger than the gate's burst goes out in pieces.
 */
export class OneWay {
  /** Bytes forwarded to the sink. */
  bytes = 0;
  /** The source sent its end and it was passed on to the sink. */
  ended = false;
  private waitingForDrain = false;
  /** Set once, before the first chunk; an optional field keeps the unlimited path a single check. */
  private gate: ChunkGate | undefined;
  /** A chunk read from the source that the gate has not admitted in full yet, and how much of it went. */
  private pending: Buffer | undefined;
  private pendingSent = 0;
  /** The source ended while a chunk was still held: pass the end on once the chunk has gone. */
  private endHeld = false;

  constructor(
    private readonly source: Duplex,
    private readonly sink: Duplex,
    private readonly onEnded: () => void,
  ) {
    source.on('data', this.onData);
    source.on('end', this.onEnd);
    sink.on('drain', this.onDrain);
  }

  /** Puts the relay under a gate (before the first chunk). */
  throttle(gate: ChunkGate): void {
    this.gate = gate;
  }

  /** True while a chunk waits for its gate. */
  get held(): boolean {
    return this.pending !== undefined;
  }

  /**
   * Bytes read from the source that the gateway still holds: a chunk waiting for its gate, what the
   * (paused) source has buffered, and what was written to the sink but not yet taken by the kernel. Read
   * when throttling starts and stops, never per chunk.
   */
  bufferedBytes(): number {
    const waiting = this.pending === undefined ? 0 : this.pending.length - this.pendingSent;
    return waiting + this.source.readableLength + this.sink.writableLength;
  }

  /** Send bytes that arrived before the tunnel existed (HTTP/1.1 bytes after the CONNECT head). */
  forward(chunk: Buffer): void {
    this.onData(chunk);
  }

  /** The gate lets `bytes` more of the held chunk go (see {@link ChunkGate.admit}). */
  granted(bytes: number): void {
    if (this.pending === undefined || this.sink.destroyed) return;
    this.sendPiece(bytes);
    this.admitRest();
  }

  private readonly onData = (chunk: Buffer): void => {
    const gate = this.gate;
    if (gate !== undefined) {
      const admitted = gate.admit(chunk.length);
      if (admitted < chunk.length) {
        this.pending = chunk;
        this.pendingSent = 0;
        this.source.pause();
        if (admitted > 0) {
          this.sendPiece(admitted);
          this.admitRest();
        }
        return;
      }
    }
    this.bytes += chunk.length;
    if (!this.sink.write(chunk)) {
      this.waitingForDrain = true;
      this.source.pause();
    }
  };

  /** Asks the gate for the rest of the held chunk until it is all sent or the gate says wait. */
  private admitRest(): void {
    while (this.pending !== undefined) {
      const admitted = this.gate!.admit(this.pending.length - this.pendingSent);
      if (admitted === 0) return;
      this.sendPiece(admitted);
    }
    if (this.endHeld) this.passEnd();
    this.resumeIfFree();
  }

  /** Forwards the next `bytes` of the held chunk; the whole chunk itself when it goes in one piece. */
  private sendPiece(bytes: number): void {
    const chunk = this.pending!;
    const from = this.pendingSent;
    const to = Math.min(chunk.length, from + bytes);
    // A piece is a view (one small object): only a chunk larger than the gate's burst is ever split.
    const piece = from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to);
    this.pendingSent = to;
    if (to === chunk.length) this.pending = undefined;
    this.bytes += piece.length;
    if (!this.sink.write(piece)) this.waitingForDrain = true;
  }

  private readonly onDrain = (): void => {
    if (!this.waitingForDrain) return;
    this.waitingForDrain = false;
    this.resumeIfFree();
  };

  private readonly onEnd = (): void => {
    // A paused source normally ends only after it is resumed, but a held chunk must never be overtaken
    // by its own end (that would truncate the tunnel).
    if (this.pending !== undefined) {
      this.endHeld = true;
      return;
    }
    this.passEnd();
  };

  private passEnd(): void {
    this.endHeld = false;
    this.ended = true;
    // Half-close: pass the end on, keep the other direction open.
    if (!this.sink.destroyed && !this.sink.writableEnded) this.sink.end();
    this.onEnded();
  }

  private resumeIfFree(): void {
    // An explicit pause() is not undone by adding a 'data' listener (Node streams), so resume explicitly.
    if (!this.waitingForDrain && this.pending === undefined && !this.source.destroyed) this.source.resume();
  }
}
