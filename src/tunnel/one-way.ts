import type { Duplex } from 'node:stream';

/** Sees every chunk after it was forwarded (a rate limiter, which may hold() the relay). */
export interface ChunkObserver {
  onChunk(bytes: number): void;
}

/**
 * Moves bytes from one side of a tunnel to the other and counts them.
 *
 * Hand-written rather than `stream.pipeline` because a tunnel needs half-close (the source's end
 * becomes the sink's FIN, the other direction keeps flowing; pipeline tears both down) and because
 * this is the per-chunk hot path: the listeners are bound once per tunnel, so a chunk costs one
 * write call and no allocation. Backpressure: when the sink's buffer is full the source is paused
 * until the sink drains, so at most one chunk per direction waits in the gateway.
 */
export class OneWay {
  bytes = 0;
  /** The source sent its end and it was passed on to the sink. */
  ended = false;
  private waitingForDrain = false;
  /** Pause requests from outside (a rate limiter); the source flows only when none is held. */
  private holds = 0;
  /** Set once, before the first chunk; an optional field keeps the unlimited path a single check. */
  private observer: ChunkObserver | undefined;

  constructor(
    private readonly source: Duplex,
    private readonly sink: Duplex,
    private readonly onEnded: () => void,
  ) {
    source.on('data', this.onData);
    source.on('end', this.onEnd);
    sink.on('drain', this.onDrain);
  }

  /** Stop reading from the source until `release()`; used by throttling. */
  hold(): void {
    this.holds++;
    this.source.pause();
  }

  release(): void {
    if (this.holds > 0) this.holds--;
    this.resumeIfFree();
  }

  observe(observer: ChunkObserver): void {
    this.observer = observer;
  }

  /**
   * Bytes read from the source that the gateway still holds: not yet emitted by the (paused) source,
   * plus written to the sink but not yet taken by the kernel. Read when throttling starts and stops,
   * never per chunk.
   */
  bufferedBytes(): number {
    return this.source.readableLength + this.sink.writableLength;
  }

  /** Send bytes that arrived before the tunnel existed (HTTP/1.1 bytes after the CONNECT head). */
  forward(chunk: Buffer): void {
    this.onData(chunk);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.bytes += chunk.length;
    if (!this.sink.write(chunk)) {
      this.waitingForDrain = true;
      this.source.pause();
    }
    // Counted after forwarding: the chunk is already read, so the limiter lets it through (into debt
    // if need be) and holds the source afterwards, instead of keeping bytes back in the gateway.
    this.observer?.onChunk(chunk.length);
  };

  private readonly onDrain = (): void => {
    if (!this.waitingForDrain) return;
    this.waitingForDrain = false;
    this.resumeIfFree();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    // Half-close: pass the end on, keep the other direction open.
    if (!this.sink.destroyed && !this.sink.writableEnded) this.sink.end();
    this.onEnded();
  };

  private resumeIfFree(): void {
    // An explicit pause() is not undone by adding a 'data' listener (Node streams), so resume explicitly.
    if (!this.waitingForDrain && this.holds === 0 && !this.source.destroyed) this.source.resume();
  }
}
