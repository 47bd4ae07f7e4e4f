import { randomUUID } from 'node:crypto';
import type { AdminRoute } from '../admin/admin-server.js';
import { AdminRequestError } from '../admin/http-json.js';
import type { GatewayEvents } from '../session/events.js';
import { type FeedRecord, feedSubscriber } from './records.js';
import { Ring } from './ring.js';
import { DEFAULT_SSE_OPTIONS, formatEvent, lastEventId, SseHub, type SseHubOptions } from './sse-hub.js';

export interface EventFeedOptions {
  /** Records kept for clients that connect later (history first, then live). */
  readonly history: number;
  readonly sse?: SseHubOptions;
}

/** 5,000 records: minutes of a busy gateway's decisions, about 2–3 MB of JSON. */
export const DEFAULT_FEED_HISTORY = 5000;

/**
 * The gateway's event feed for operators: a subscriber of the gateway's events that keeps the latest
 * records in a bounded ring and streams them over SSE at `GET /v1/events` (read role): first a `hello`
 * naming this process (so a client can tell a restarted gateway, whose numbering starts again), then the
 * kept history (or what came after `Last-Event-ID`), then every new record as it happens. Loaded only
 * when the admin listener is on; the data path only pays for building one small object per event.
 */
export class EventFeed {
  readonly instance = randomUUID();
  private readonly ring: Ring<FeedRecord>;
  private readonly hub: SseHub;
  private readonly unsubscribe: () => void;

  constructor(events: GatewayEvents, options: EventFeedOptions = { history: DEFAULT_FEED_HISTORY }) {
    this.ring = new Ring(options.history);
    this.hub = new SseHub(options.sse ?? DEFAULT_SSE_OPTIONS);
    this.unsubscribe = events.subscribe(feedSubscriber((record) => this.publish(record)));
  }

  /** Kept records newer than `seq` (for tests and the first page of a client). */
  since(seq = 0): FeedRecord[] {
    return this.ring.since(seq).map((e) => e.value);
  }

  routes(): AdminRoute[] {
    return [
      {
        method: 'GET',
        path: '/v1/events',
        access: 'read',
        handle: ({ req, res, url }) => {
          const since = lastEventId(req, url);
          // A Last-Event-ID from before a restart of this gateway names another numbering: send everything.
          const sameInstance = url.searchParams.get('instance') === this.instance;
          const history = this.ring
            .since(sameInstance ? since : 0)
            .map((e) => formatEvent('record', e.json, e.seq));
          const hello = formatEvent(
            'hello',
            JSON.stringify({ instance: this.instance, last_seq: this.ring.lastSeq, history: history.length }),
          );
          if (!this.hub.open(req, res, [hello, ...history])) {
            throw new AdminRequestError(
              'ADMIN_UNAVAILABLE',
              'too many event streams are open; try again later',
            );
          }
        },
      },
    ];
  }

  close(): void {
    this.unsubscribe();
    this.hub.close();
  }

  private publish(record: FeedRecord): void {
    const entry = this.ring.push(record);
    if (this.hub.size > 0) this.hub.publish(formatEvent('record', entry.json, entry.seq));
  }
}
