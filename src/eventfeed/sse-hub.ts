import type { IncomingMessage, ServerResponse } from 'node:http';

export interface SseHubOptions {
  /** Concurrent streams; one more is refused with 503 (each holds a socket and a buffer). */
  readonly maxClients: number;
  /** Bytes a client may have queued and unsent; beyond it events for that client are dropped and counted. */
  readonly maxBufferedBytes: number;
  /** A comment line this often keeps proxies and the client's idle timers from closing a quiet stream. */
  readonly heartbeatMs: number;
}

export const DEFAULT_SSE_OPTIONS: SseHubOptions = {
  maxClients: 16,
  maxBufferedBytes: 1024 * 1024,
  heartbeatMs: 15_000,
};

interface Client {
  readonly res: ServerResponse;
  dropped: number;
  /** Checked on every heartbeat: a stream whose credential has ended (logout, expiry) is closed. */
  readonly valid: () => boolean;
}

/** The headers of an event stream; no caching, no transformation by proxies. */
export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-store, no-transform',
  'x-content-type-options': 'nosniff',
  'x-accel-buffering': 'no',
  connection: 'keep-alive',
} as const;

/**
 * Server-sent event streams to a bounded set of clients. Publishing never blocks and never buffers
 * without bound: a client whose socket is not draining (a stalled browser tab, a slow link) loses events
 * beyond `maxBufferedBytes`, and once it drains it is told how many with a `dropped` event, so it knows to
 * reload rather than show a silently incomplete picture. The data path that publishes never waits.
 */
export class SseHub {
  private readonly clients = new Set<Client>();
  private readonly heartbeat: NodeJS.Timeout;
  /** Events dropped for slow clients since start (all clients together). */
  droppedTotal = 0;

  constructor(private readonly options: SseHubOptions = DEFAULT_SSE_OPTIONS) {
    this.heartbeat = setInterval(() => {
      for (const client of this.clients) {
        if (client.valid()) this.write(client, ': keep-alive\n\n');
        else {
          this.clients.delete(client);
          client.res.end();
        }
      }
    }, options.heartbeatMs);
    this.heartbeat.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  get full(): boolean {
    return this.clients.size >= this.options.maxClients;
  }

  /**
   * Starts a stream on `res` and writes `history` (already formatted events) first; from then on the
   * client gets every `publish` while `valid()` holds (checked on each heartbeat). Returns false (and
   * answers nothing) when the hub is full: the caller sends its own 503.
   */
  open(
    req: IncomingMessage,
    res: ServerResponse,
    history: readonly string[],
    valid: () => boolean = () => true,
  ): boolean {
    if (this.full) return false;
    res.writeHead(200, SSE_HEADERS);
    // A reconnecting EventSource waits this long (ms) before trying again.
    res.write('retry: 2000\n\n');
    const client: Client = { res, dropped: 0, valid };
    this.clients.add(client);
    const remove = () => this.clients.delete(client);
    req.once('close', remove);
    res.once('close', remove);
    res.on('error', remove);
    for (const event of history) this.write(client, event);
    return true;
  }

  /** Sends one formatted event (see {@link formatEvent}) to every client. */
  publish(event: string): void {
    for (const client of this.clients) this.write(client, event);
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const client of this.clients) client.res.end();
    this.clients.clear();
  }

  private write(client: Client, event: string): void {
    const { res } = client;
    if (res.destroyed || res.writableEnded) return;
    if (res.writableLength > this.options.maxBufferedBytes) {
      client.dropped++;
      this.droppedTotal++;
      return;
    }
    if (client.dropped > 0) {
      res.write(formatEvent('dropped', JSON.stringify({ dropped: client.dropped })));
      client.dropped = 0;
    }
    res.write(event);
  }
}

/** One SSE event: `id` (for Last-Event-ID), `event` name and a one-line JSON `data`. */
export function formatEvent(event: string, json: string, id?: number): string {
  // JSON.stringify never emits a raw line break, so one data line carries the whole value.
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${json}\n\n`;
}

/** The Last-Event-ID a reconnecting client sends (header, or `?since=` for clients that cannot set headers). */
export function lastEventId(req: IncomingMessage, url: URL): number {
  const raw = req.headers['last-event-id'] ?? url.searchParams.get('since') ?? '0';
  const text = Array.isArray(raw) ? (raw[0] ?? '0') : raw;
  const n = Number(text);
  return /^[0-9]{1,15}$/.test(text) && Number.isSafeInteger(n) ? n : 0;
}
