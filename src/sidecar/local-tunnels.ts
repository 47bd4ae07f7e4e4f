import type { ClientHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Logger } from '../observability/logger.js';
import { Tunnel, type TunnelCloseCause, type TunnelSummary } from '../tunnel/tunnel.js';
import { SidecarEvent } from './events.js';

/** Log fields of one tunnel, shared by its opened/refused/closed lines. */
export type TunnelFields = Record<string, string | number | undefined>;

/** Something open that shutdown may have to cut: a relayed tunnel or a forwarded HTTP request. */
interface Closeable {
  close(): void;
}

/**
 * The tunnels this sidecar relays, for the close log line and for shutdown (wait for them up to the
 * grace period, then cut the rest).
 */
export class LocalTunnels {
  private readonly open = new Set<Closeable>();
  private drained: (() => void) | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly idleTimeoutMs: number,
  ) {}

  get size(): number {
    return this.open.size;
  }

  /**
   * Relays bytes between the local client's socket and the gateway's CONNECT stream until both
   * directions have ended (half-close kept: the agent may finish sending and still read the reply).
   * `head` holds bytes the client sent after its CONNECT request, before the tunnel existed. `onClosed`
   * gets the tunnel's totals, in the agent's directions, when it is over.
   */
  relay(
    local: Socket,
    stream: ClientHttp2Stream,
    head: Buffer,
    fields: TunnelFields,
    onClosed?: (ended: { bytesClientToDest: number; bytesDestToClient: number; cause: string }) => void,
  ): void {
    const started = Date.now();
    // tunnel/ relays a "client" side and a TCP "dest" socket; here the TCP socket is the local
    // client and the other side is the gateway stream, so directions and causes are mirrored below.
    const entry: Closeable = { close: () => tunnel.close('shutdown') };
    const tunnel = new Tunnel(stream, local, {
      idleTimeoutMs: this.idleTimeoutMs,
      onClose: (summary) => {
        this.untrack(entry);
        const cause = mirroredCause(summary);
        onClosed?.({
          bytesClientToDest: summary.bytesDestToClient,
          bytesDestToClient: summary.bytesClientToDest,
          cause,
        });
        this.logger.info(
          {
            ...fields,
            bytes_client_to_dest: summary.bytesDestToClient,
            bytes_dest_to_client: summary.bytesClientToDest,
            close_cause: cause,
            error: summary.error,
            duration_ms: Date.now() - started,
          },
          SidecarEvent.tunnelClosed,
        );
      },
    });
    this.open.add(entry);
    if (head.length > 0) tunnel.down.forward(head);
  }

  /** Registers a forwarded HTTP request; call the returned function when it is over. */
  track(close: () => void): () => void {
    const entry: Closeable = { close };
    this.open.add(entry);
    return () => this.untrack(entry);
  }

  /** Resolves when no tunnel is open, or after `ms`; true if they all finished. */
  waitForIdle(ms: number): Promise<boolean> {
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.drained = undefined;
        resolve(false);
      }, ms);
      this.drained = () => {
        clearTimeout(timer);
        this.drained = undefined;
        resolve(true);
      };
    });
  }

  closeAll(): void {
    for (const entry of [...this.open]) entry.close();
  }

  private untrack(entry: Closeable): void {
    this.open.delete(entry);
    if (this.open.size === 0) this.drained?.();
  }
}

function mirroredCause(summary: TunnelSummary): TunnelCloseCause | 'gateway_error' | 'local_client_error' {
  if (summary.cause === 'client_error') return 'gateway_error';
  if (summary.cause === 'dest_error') return 'local_client_error';
  return summary.cause;
}
