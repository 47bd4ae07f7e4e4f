import type { Destination } from '../destination/normalize.js';
import type { TraceContext } from '../tracecontext/traceparent.js';
import type { TunnelCloseCause } from '../tunnel/tunnel.js';
import { EventSeam, type Subscriber } from './event-seam.js';
import type { TunnelProtocol, TunnelSession } from './tunnel-session.js';

export type { TunnelCloseCause };

/**
 * The gateway's one publish seam. Every transition of a connection, a CONNECT and a tunnel is published
 * here exactly once, as a typed event; the audit log is its first subscriber, and metrics, traces and the
 * dashboard subscribe the same way. The data path knows nothing about any of them (undici's diagnostics
 * channels are the model), and a failing subscriber cannot break it (session/event-seam.ts).
 */

/** A TLS client as the listener saw it, before any identity is known. */
export interface PeerEvent {
  readonly peerAddr: string;
}

export interface HandshakeCompleted extends PeerEvent {
  /** ALPN: `h2` or `http/1.1`. */
  readonly alpn: string;
  readonly resumed: boolean;
}

export interface HandshakeFailed extends PeerEvent {
  /** OpenSSL's or Node's error code (e.g. `ERR_SSL_NO_SHARED_CIPHER`), else the message. */
  readonly error: string;
}

/** The listener refused a connection before any CONNECT could be made on it. */
export interface ConnectionRefused extends PeerEvent {
  /** A deny reason (observability/events.ts DENY_REASONS) for a certificate, or which cap was reached. */
  readonly reason:
    | 'no_client_certificate'
    | 'bad_client_certificate'
    | 'max_connections'
    | 'max_connections_per_source';
  readonly detail: string;
}

/** A connection was closed because it never carried (or no longer carries) a tunnel. */
export interface ConnectionIdle extends PeerEvent {
  readonly identity: string | null;
  /** `request_timeout`: no CONNECT being decided and no tunnel open for server.request_timeout_ms. */
  readonly reason: 'request_timeout';
}

/**
 * One CONNECT (an HTTP/1.1 request or an HTTP/2 stream) from arrival to its answer. Typed, and filled in
 * as the flow advances: the phases' times are what the decision-latency metric and the trace's child
 * spans are made of (monotonic milliseconds, `performance.now()`).
 */
export interface ConnectAttempt {
  readonly protocol: TunnelProtocol;
  readonly peerAddr: string;
  readonly identity: string | null;
  /** The raw identity extension value of a certificate whose identity is malformed (audit only). */
  readonly claimedIdentity: Buffer | null;
  readonly spki: Buffer;
  readonly spkiFingerprint: string;
  /** As the client sent it (request target or :authority); attacker-controlled. */
  readonly rawAuthority: string;
  readonly trace: TraceContext | undefined;
  readonly startedAt: number;
  destination: Destination | undefined;
  /** The policy's allow, once given (an egress refusal or a failed dial still names the permission). */
  grant: AttemptGrant | undefined;
  policy: Phase | undefined;
  dns: Phase | undefined;
  dial: Phase | undefined;
}

export interface AttemptGrant {
  readonly permissionId: string;
  readonly signingKeyId: string;
  readonly cached: boolean;
}

export interface Phase {
  readonly start: number;
  end: number;
}

/** Why a CONNECT got no tunnel; `status` is what the client was answered. */
export interface ConnectRejected {
  readonly attempt: ConnectAttempt;
  readonly status: 400 | 403 | 405 | 429 | 502 | 503;
  readonly reason: RejectReason;
  readonly detail: string | undefined;
  /** Reason-specific facts (the tunnel cap and count, the address dialled, the method). */
  readonly facts?: Readonly<Record<string, string | number | undefined>>;
}

export type RejectReason =
  /** Policy or egress said no (`deny_reason` in the log): see observability/events.ts DENY_REASONS. */
  | { readonly kind: 'denied'; readonly denyReason: string }
  | { readonly kind: 'bad_request' }
  | { readonly kind: 'method_not_allowed' }
  | { readonly kind: 'too_many_tunnels' }
  | { readonly kind: 'over_quota' }
  /** The shared budget store could not be asked and the identity's bytes are limited (fail closed). */
  | { readonly kind: 'budget_unavailable' }
  | { readonly kind: 'upstream_failed'; readonly errorKind: string }
  | { readonly kind: 'internal_error' };

/** The client left before its CONNECT was answered; whatever was decided or dialled was given back. */
export interface ConnectAbandoned {
  readonly attempt: ConnectAttempt;
  /**
   * How far the CONNECT had got: `received` (gone before any work began, e.g. an HTTP/2 stream reset
   * at once), `deciding` (policy, DNS or dial still running) or `dialled`.
   */
  readonly stage: 'received' | 'deciding' | 'dialled';
}

export interface TunnelOpened {
  readonly session: TunnelSession;
  readonly attempt: ConnectAttempt;
}

export interface TunnelThrottled {
  readonly session: TunnelSession;
  readonly direction: 'client_to_dest' | 'dest_to_client';
  readonly limit: string;
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
}

export interface TunnelClosed {
  readonly session: TunnelSession;
  readonly cause: TunnelCloseCause;
  /** For revoked/expired/operator closes: the precise reason (a deny reason, who asked). */
  readonly reason: string | undefined;
  readonly error: string | undefined;
  readonly bytesClientToDest: number;
  readonly bytesDestToClient: number;
  readonly durationMs: number;
  readonly throttle: ThrottleTotals | undefined;
}

export interface ThrottleTotals {
  readonly throttledMs: number;
  readonly clientToDestThrottledMs: number;
  readonly destToClientThrottledMs: number;
  readonly maxHeldBytes: number;
}

/** The registry answered (again) or stopped answering; published on changes only. */
export interface RegistryStatus {
  readonly available: boolean;
  readonly error: string | undefined;
}

/** The live check of open tunnels turned healthy or unhealthy; published on changes only. */
export interface LiveCheckStatus {
  readonly healthy: boolean;
  /** `listening`: NOTIFY from the registry extension; `polling`: re-checks only; `down`: neither works. */
  readonly mode: 'listening' | 'polling' | 'down';
  readonly detail: string | undefined;
}

/** An operator acted through the admin API or the dashboard: who, what, on what, with what result. */
export interface OperatorAction {
  readonly action: string;
  /** The credential's role (`admin`, `read`). */
  readonly role: string;
  /** `ip:port` of the operator's client. */
  readonly peer: string;
  /** The person a tool says it acts for (the dashboard's logged-in operator); claimed, for the record. */
  readonly operator?: string;
  readonly target: Readonly<Record<string, string>>;
  readonly result: Readonly<Record<string, string | number>>;
}

/** One registry query settled (the query gate's observer): for the registry query metrics. */
export interface RegistryQuery {
  readonly outcome: 'ok' | 'error' | 'timeout';
  readonly durationMs: number;
}

/** Which shared bucket a lease is drawn from: an identity's upload or download, or the all-identity one. */
export type BudgetBucketName = 'upload' | 'download' | 'total';

/**
 * One lease call to the shared budget store (`[rate_limit] shared = true`), timed: the store's latency is
 * what a metrics subscriber graphs. Published for every call, successful or not; the audit log ignores it.
 */
export interface BudgetLease {
  /** Empty for the all-identity bucket. */
  readonly identity: string;
  readonly bucket: BudgetBucketName;
  readonly requestedBytes: number;
  readonly grantedBytes: number;
  /** From the call to its answer (monotonic ms). */
  readonly latencyMs: number;
  /** false: the store did not answer (the lease counts as nothing granted). */
  readonly ok: boolean;
}

/** An identity's quota is spent: published once per identity and direction per quota window, across gateways. */
export interface QuotaExhausted {
  readonly identity: string;
  readonly direction: 'upload' | 'download';
  readonly quotaBytes: number;
  readonly windowS: number;
  readonly usedBytes: number;
  /** When the window will have freed room again. */
  readonly retryAfterS: number;
}

/** The shared budget store answered (again) or stopped answering; published on changes only. */
export interface BudgetStoreStatus {
  readonly available: boolean;
  readonly error: string | undefined;
}

export interface GatewayEventMap {
  handshakeCompleted: HandshakeCompleted;
  handshakeFailed: HandshakeFailed;
  connectionRefused: ConnectionRefused;
  connectionIdle: ConnectionIdle;
  connectRejected: ConnectRejected;
  connectAbandoned: ConnectAbandoned;
  tunnelOpened: TunnelOpened;
  tunnelThrottled: TunnelThrottled;
  tunnelClosed: TunnelClosed;
  registryStatus: RegistryStatus;
  registryQuery: RegistryQuery;
  liveCheckStatus: LiveCheckStatus;
  operatorAction: OperatorAction;
  budgetLease: BudgetLease;
  quotaExhausted: QuotaExhausted;
  budgetStoreStatus: BudgetStoreStatus;
}

export type GatewayEventName = keyof GatewayEventMap;

/** A subscriber handles any subset of the events. */
export type GatewaySubscriber = Subscriber<GatewayEventMap>;

/** The gateway's seam (see EventSeam): the audit log, metrics and traces subscribe to it. */
export class GatewayEvents extends EventSeam<GatewayEventMap> {}
