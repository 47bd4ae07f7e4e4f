import type { Socket } from 'node:net';

/**
 * Bytes a CONNECT client may send before its answer that are kept for the tunnel; beyond it the socket
 * is paused (the client is then still seen leaving by its 'close', not by its end). A TLS ClientHello
 * is a few KiB; most clients send nothing before the 200.
 */
const EARLY_BYTES_LIMIT = 64 * 1024;

/**
 * Watches a local client from the moment its request arrives until its tunnel is established or
 * refused, so that a client that leaves while the gateway decides is noticed at once: its CONNECT is
 * cancelled at the gateway (which then abandons the dial and gives the identity's tunnel slot back)
 * instead of becoming a tunnel that nobody reads, held until the idle timeout.
 *
 * A client counts as gone when its socket closes *or ends*. A proxy client that half-closes before the
 * answer to its CONNECT is pathological: it can no longer send anything through the tunnel it asked
 * for, and `printf … | socat -t0` or a killed process look exactly like that. Node's HTTP server draws
 * the same line for absolute-form requests (a half-closed request is aborted), so both kinds of request
 * are treated alike. Once the tunnel is established, half-close is the tunnel's own business again.
 */
export interface DepartureWatch {
  /** Aborted the moment the client is seen gone; handed to the gateway request to cancel it. */
  readonly signal: AbortSignal;
  /** The client ended or closed its connection since the request arrived. */
  readonly departed: boolean;
  /**
   * Stops watching and removes the listeners (a keep-alive socket serves more requests). Returns the
   * bytes a CONNECT client sent after its request head while it waited; call it in the same turn as the
   * socket is handed to the tunnel, which reads on from there.
   */
  stop(): Buffer;
}

/**
 * `readsSocket`: the socket was taken from Node's HTTP server (CONNECT), so nothing reads it, and its
 * end can only be seen by reading; the bytes read are kept for the tunnel. Without it (an absolute-form
 * request) the HTTP server reads the socket and its 'end' reaches this watch as well.
 */
export function watchDeparture(socket: Socket, readsSocket: boolean): DepartureWatch {
  const controller = new AbortController();
  const early: Buffer[] = [];
  let earlyBytes = 0;
  let pausedHere = false;
  const depart = () => controller.abort();
  const collect = (chunk: Buffer) => {
    early.push(chunk);
    earlyBytes += chunk.length;
    if (earlyBytes >= EARLY_BYTES_LIMIT && !pausedHere) {
      pausedHere = true;
      socket.pause();
    }
  };
  socket.on('end', depart);
  socket.on('close', depart);
  if (readsSocket) socket.on('data', collect);
  // Gone before we looked (a keep-alive client's later request, or a reset during parsing).
  if (socket.destroyed || socket.readableEnded) depart();
  return {
    signal: controller.signal,
    get departed() {
      return controller.signal.aborted;
    },
    stop(): Buffer {
      socket.off('end', depart);
      socket.off('close', depart);
      if (readsSocket) socket.off('data', collect);
      // The tunnel's reader attaches in this same turn; an explicit pause would keep it from flowing.
      if (pausedHere) socket.resume();
      return early.length === 0 ? Buffer.alloc(0) : Buffer.concat(early, earlyBytes);
    },
  };
}
