import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { OneWay } from './one-way.js';

/** Why a tunnel ended. The pipe itself only tells the first five apart; the rest are its owners' reasons. */
export type TunnelCloseCause =
  /** Both directions ended normally (each side sent its end). */
  | 'completed'
  | 'idle_timeout'
  | 'client_error'
  | 'dest_error'
  /** One side went away without ending its direction (reset, abrupt close), or its connection did. */
  | 'aborted'
  | 'shutdown'
  /** Its permission, signer or scope was revoked, deleted or changed so that it no longer allows it. */
  | 'revoked'
  /** The permission's or the signer's window ended. */
  | 'expired'
  /** The registry could not be re-checked for longer than policy.revalidation_grace_s. */
  | 'revalidation_failed'
  /** An operator closed it (`tunnels close`, the dashboard). */
  | 'operator'
  /** It reached server.max_tunnel_lifetime_s. */
  | 'max_lifetime';

export interface TunnelSummary {
  readonly bytesClientToDest: number;
  readonly bytesDestToClient: number;
  readonly cause: TunnelCloseCause;
  /** The owner's precise reason for a close it asked for (a deny reason, who closed it). */
  readonly reason: string | undefined;
  readonly error: string | undefined;
}

export interface TunnelOptions {
  /** No byte in either direction for this long closes the tunnel. */
  readonly idleTimeoutMs: number;
  readonly onClose: (summary: TunnelSummary) => void;
}

/**
 * An established tunnel: an opaque byte pipe between the client side (an HTTP/2 stream or the
 * client's TLS socket) and the upstream TCP socket, with half-close and one teardown path.
 */
export class Tunnel {
  readonly up: OneWay;
  readonly down: OneWay;
  private cause: TunnelCloseCause | undefined;
  private reason: string | undefined;
  private error: string | undefined;
  private closedSides = 0;
  private reported = false;

  constructor(
    readonly client: Duplex,
    readonly dest: Socket,
    private readonly options: TunnelOptions,
  ) {
    this.up = new OneWay(client, dest, this.onDirectionEnded);
    this.down = new OneWay(dest, client, this.onDirectionEnded);
    client.on('error', this.onClientError);
    dest.on('error', this.onDestError);
    client.on('close', this.onSideClosed);
    dest.on('close', this.onSideClosed);
    // Every byte either way is a read or a write on the upstream socket, so its own inactivity
    // timer measures tunnel idleness exactly, at no per-chunk cost of ours.
    dest.setTimeout(options.idleTimeoutMs, this.onIdle);
  }

  /** Tear both sides down now (shutdown deadline, revocation, operator action). */
  close(cause: TunnelCloseCause, reason?: string): void {
    if (this.cause === undefined) this.reason = reason;
    this.fail(cause, undefined);
  }

  private readonly onDirectionEnded = (): void => {
    if (this.up.ended && this.down.ended && this.cause === undefined) this.cause = 'completed';
  };

  private readonly onIdle = (): void => {
    this.fail('idle_timeout', undefined);
  };

  private readonly onClientError = (err: Error): void => {
    this.fail('client_error', err.message);
  };

  private readonly onDestError = (err: Error): void => {
    this.fail('dest_error', err.message);
  };

  private readonly onSideClosed = (): void => {
    this.closedSides++;
    if (this.closedSides === 1 && !(this.up.ended && this.down.ended)) {
      // One side is gone while a direction was still open: nothing can reach it any more.
      this.fail('aborted', undefined);
    }
    if (this.closedSides === 2) this.report();
  };

  private fail(cause: TunnelCloseCause, error: string | undefined): void {
    if (this.cause === undefined) {
      this.cause = cause;
      this.error = error;
    }
    this.dest.setTimeout(0);
    if (!this.client.destroyed) this.client.destroy();
    if (!this.dest.destroyed) this.dest.destroy();
  }

  private report(): void {
    if (this.reported) return;
    this.reported = true;
    this.dest.setTimeout(0);
    this.options.onClose({
      bytesClientToDest: this.up.bytes,
      bytesDestToClient: this.down.bytes,
      cause: this.cause ?? 'completed',
      reason: this.reason,
      error: this.error,
    });
  }
}
