import type { ClientRequest, IncomingMessage } from 'node:http';
import { createParser } from 'eventsource-parser';
import { type AdminEndpoint, adminRequest, openAdminRequest } from '../admin/client.js';
import type { FeedRecord } from '../eventfeed/records.js';
import type { DashboardGateway } from './config.js';

/** How the dashboard sees one gateway right now. */
export interface LinkState {
  readonly gateway: string;
  /** The event stream is open. */
  readonly connected: boolean;
  readonly detail: string;
  /** The gateway's /readyz checks, as last polled. */
  readonly ready: boolean | undefined;
  readonly checks: ReadonlyArray<{ name: string; ok: boolean; detail: string }>;
}

export interface LinkHandlers {
  record(gateway: string, record: FeedRecord): void;
  /** The gateway's feed dropped events for us (we were slow): the picture has a hole. */
  dropped(gateway: string, count: number): void;
  state(state: LinkState): void;
}

/** One tunnel as a gateway's `/v1/tunnels` lists it (admin/tunnel-routes.ts tunnelJson). */
export interface GatewayTunnel {
  readonly tunnel_id: string;
  readonly source_identity: string;
  readonly dest_authority: string;
  readonly protocol: string;
  readonly permission_id: string;
  readonly signing_key_id: string;
  readonly opened_at: string;
  readonly age_ms: number;
  readonly bytes_client_to_dest: number;
  readonly bytes_dest_to_client: number;
  readonly throttled: boolean;
}

const FEED_TYPES = new Set(['decision', 'tunnel_closed', 'operator_action', 'registry_status', 'live_check']);
/** A record larger than this is not one the gateway sends: the stream is dropped and reopened. */
const MAX_EVENT_BYTES = 64 * 1024;
const RECONNECT_MS = [500, 1000, 2000, 5000, 10_000] as const;

/**
 * The dashboard's connection to one gateway's admin listener: its event feed (`/v1/events`, kept open and
 * reopened with `Last-Event-ID` after a break, so nothing kept by the gateway is missed or repeated), and
 * calls for its tunnels, limits, readiness and the kill switch. Every gateway is one of these: none is
 * special.
 */
export class GatewayLink {
  private instance: string | undefined;
  private lastSeq = 0;
  private request: ClientRequest | undefined;
  private retry: NodeJS.Timeout | undefined;
  private failures = 0;
  private stopped = false;
  private connected = false;
  private detail = 'connecting';
  private ready: boolean | undefined;
  private checks: LinkState['checks'] = [];
  private readonly endpoint: AdminEndpoint;

  constructor(
    readonly gateway: DashboardGateway,
    private readonly handlers: LinkHandlers,
  ) {
    this.endpoint = { url: gateway.adminUrl, token: gateway.token, ca: gateway.ca };
  }

  get name(): string {
    return this.gateway.name;
  }

  get state(): LinkState {
    return {
      gateway: this.name,
      connected: this.connected,
      detail: this.detail,
      ready: this.ready,
      checks: this.checks,
    };
  }

  start(): void {
    this.open();
  }

  stop(): void {
    this.stopped = true;
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.request?.destroy();
  }

  async tunnels(): Promise<GatewayTunnel[]> {
    const answer = await this.call('GET', '/v1/tunnels');
    const list = answer['tunnels'];
    return Array.isArray(list) ? (list as GatewayTunnel[]) : [];
  }

  async limits(identities: readonly string[]): Promise<Record<string, unknown>> {
    const query = new URLSearchParams(identities.map((i): [string, string] => ['identity', i])).toString();
    return this.call('GET', `/v1/limits${query === '' ? '' : `?${query}`}`);
  }

  /** The kill switch: closes the selected tunnels on this gateway, on behalf of `operator`; how many. */
  async close(selector: Record<string, string>, operator: string): Promise<number> {
    const answer = await this.call('POST', '/v1/tunnels/close', { ...selector, operator });
    return Number(answer['closed'] ?? 0);
  }

  /** Polls /readyz (no credential needed, but sent anyway: harmless). */
  async pollReadiness(): Promise<void> {
    try {
      const answer = await adminRequest(this.endpoint, 'GET', '/readyz', undefined, 5000);
      this.ready = answer.json?.['ready'] === true;
      const checks = answer.json?.['checks'];
      this.checks = Array.isArray(checks) ? (checks as LinkState['checks']) : [];
    } catch (error) {
      this.ready = false;
      this.checks = [{ name: 'reachable', ok: false, detail: (error as Error).message }];
    }
    this.handlers.state(this.state);
  }

  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>> {
    const answer = await adminRequest(this.endpoint, method, path, body);
    if (answer.status >= 400 || answer.json === undefined) {
      const error = answer.json?.['error'] as { code?: string; message?: string } | undefined;
      throw new GatewayCallError(
        `gateway ${this.name}: ${error?.message ?? `HTTP ${answer.status}`}`,
        error?.code ?? 'ADMIN_ERROR',
        answer.status,
      );
    }
    return answer.json;
  }

  private open(): void {
    if (this.stopped) return;
    this.retry = undefined;
    const params = new URLSearchParams();
    if (this.instance !== undefined) {
      params.set('instance', this.instance);
      params.set('since', String(this.lastSeq));
    }
    const req = openAdminRequest(
      this.endpoint,
      'GET',
      `/v1/events?${params.toString()}`,
      // No idle timeout on the stream itself: the gateway sends a keep-alive comment every 15 s, and
      // a stream silent for 45 s is treated as dead below.
      0,
      undefined,
      (res) => this.onResponse(res),
      'text/event-stream',
    );
    this.request = req;
    req.on('error', (error) => this.broken(error.message));
    req.end();
  }

  private onResponse(res: IncomingMessage): void {
    if (res.statusCode !== 200) {
      res.resume();
      this.broken(`event stream answered HTTP ${res.statusCode}`);
      return;
    }
    let silence = setTimeout(() => this.request?.destroy(new Error('event stream silent for 45 s')), 45_000);
    const parser = createParser({
      onEvent: (event) => {
        if (event.data.length > MAX_EVENT_BYTES) {
          this.request?.destroy(new Error('oversized event'));
          return;
        }
        this.onEvent(event.event ?? 'message', event.data, event.id);
      },
    });
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      silence.refresh();
      parser.feed(chunk);
    });
    res.on('end', () => {
      clearTimeout(silence);
      this.broken('event stream ended');
    });
    res.on('error', (error) => {
      clearTimeout(silence);
      this.broken(error.message);
    });
    silence = silence.unref();
  }

  private onEvent(name: string, data: string, id: string | undefined): void {
    let value: unknown;
    try {
      value = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof value !== 'object' || value === null) return;
    const fields = value as Record<string, unknown>;
    if (name === 'hello') {
      const instance = typeof fields['instance'] === 'string' ? fields['instance'] : undefined;
      if (instance !== this.instance) this.lastSeq = 0;
      this.instance = instance;
      this.failures = 0;
      this.connected = true;
      this.detail = 'streaming';
      this.handlers.state(this.state);
      return;
    }
    if (name === 'dropped') {
      this.handlers.dropped(this.name, Number(fields['dropped'] ?? 0));
      return;
    }
    if (name !== 'record' || !FEED_TYPES.has(String(fields['type']))) return;
    const seq = Number(id);
    if (Number.isSafeInteger(seq)) {
      if (seq <= this.lastSeq) return;
      this.lastSeq = seq;
    }
    this.handlers.record(this.name, value as FeedRecord);
  }

  private broken(detail: string): void {
    // One break reports through several events (the answer's end, the request's error): act once.
    if (this.stopped || this.retry !== undefined) return;
    this.request?.destroy();
    this.request = undefined;
    const wasConnected = this.connected;
    this.connected = false;
    this.detail = detail;
    if (wasConnected || this.failures === 0) this.handlers.state(this.state);
    const delay = RECONNECT_MS[Math.min(this.failures, RECONNECT_MS.length - 1)];
    this.failures++;
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = setTimeout(() => this.open(), delay);
    this.retry.unref();
  }
}

export class GatewayCallError extends Error {
  override name = 'GatewayCallError';
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
  }
}
