/**
 * The names that appear in log lines. Dashboards, alerts and the interop contract match on these exact
 * strings, so every log call takes them from here instead of spelling them inline.
 */

/** Event names: the `msg` of each JSON log line. */
export const LogEvent = {
  // Interop contract: the Rust gateway emits these, and operators' tooling already matches on them.
  listening: 'listening',
  tlsHandshakeFailed: 'TLS handshake failed',
  connectAllowed: 'CONNECT allowed',
  connectDenied: 'CONNECT denied',
  tcpConnectFailed: 'TCP connect failed',
  tunnelClosed: 'tunnel closed',
  // Ours.
  clientCertificateRefused: 'client certificate refused',
  requestTimeout: 'request timeout',
  methodNotAllowed: 'method not allowed',
  badRequest: 'bad request',
  http2SessionError: 'HTTP/2 session error',
  internalError: 'internal error',
  listenerError: 'listener error',
  startupFailed: 'startup failed',
  signalReceived: 'signal received',
  shutdownStarted: 'shutdown started',
  shutdownComplete: 'shutdown complete',
  /** A tunnel was first held by a rate limit (once per tunnel; `tunnel closed` has the throttled time). */
  rateLimited: 'rate limited',
  /** A CONNECT was refused with 429: the identity is at its max_tunnels_per_identity. */
  tooManyTunnels: 'too many tunnels',
  /** SIGHUP: the config file was re-read and its rate limits applied. */
  configReloaded: 'config reloaded',
  /** SIGHUP: the config file was invalid; the gateway keeps the config it had. */
  configReloadFailed: 'config reload failed',
  /** A connection refused at accept: server.max_connections or max_connections_per_source reached. */
  connectionRefused: 'connection refused',
  /** The client left before its CONNECT was answered. */
  connectAbandoned: 'CONNECT abandoned',
  /** Repeated refusal lines from one source were counted instead of written; the counts by kind. */
  deniesSuppressed: 'denies suppressed',
  /** The registry stopped answering (every CONNECT is denied until it is back). */
  registryUnavailable: 'registry unavailable',
  registryAvailable: 'registry available',
  /** Open tunnels cannot be re-validated (see close cause revalidation_failed). */
  liveCheckUnhealthy: 'live check unhealthy',
  liveCheckHealthy: 'live check healthy',
  /** An operator acted through the admin API or the dashboard (who, what, result). */
  operatorAction: 'operator action',
  /** The admin listener is up. */
  adminListening: 'admin listening',
  /** `agent-gateway dashboard` is up (its URL, the gateways it watches). */
  dashboardListening: 'dashboard listening',
  /** SIGUSR1/SIGUSR2 and other signals the process does not act on. */
  signalIgnored: 'signal ignored',
  /** A CONNECT was refused with 429 and Retry-After: the identity's quota is spent. */
  overQuota: 'over quota',
  /** A CONNECT was refused with 503: the shared budget store could not be asked (limited identity). */
  budgetUnavailable: 'budget unavailable',
  /** An identity spent its quota: once per identity and direction per quota window, across gateways. */
  quotaExhausted: 'quota exhausted',
  /** The shared budget store stopped (or started again) answering; logged on the change only. */
  budgetStoreUnavailable: 'budget store unavailable',
  budgetStoreAvailable: 'budget store available',
  /** server.workers > 1: the primary started a worker process, or one exited. */
  workerStarted: 'worker started',
  workerExited: 'worker exited',
  /** Spans are exported over OTLP (endpoint, protocol). */
  traceExportEnabled: 'trace export enabled',
  /** OTLP exports fail (collector down, refusing); spans queue up to the bound, then are dropped. */
  traceExportFailing: 'trace export failing',
  traceExportRecovered: 'trace export recovered',
  /** An OTEL_* environment variable had a value the gateway cannot use; it was ignored. */
  traceSettingIgnored: 'trace setting ignored',
  /** The registry answers, but at a schema this gateway does not read: it stops (exit 1). */
  registrySchemaMismatch: 'registry schema mismatch',
} as const;

export type LogEventName = (typeof LogEvent)[keyof typeof LogEvent];

/** Field names carried by tunnel and decision events (interop contract). */
export const LogField = {
  /** The identity from the client certificate extension; present only when one was read. */
  sourceIdentity: 'source_identity',
  /** `ip:port` of the TLS client. */
  sourcePeerAddr: 'source_peer_addr',
  /** The normalized `host:port` / `[ipv6]:port` the client asked for. */
  destAuthority: 'dest_authority',
  /** The policy outcome: see {@link PolicyDecisionValue}. */
  policyDecision: 'policy_decision',
  /** Why a CONNECT was denied: see {@link DenyReason}. Logged, never sent to the client. */
  denyReason: 'deny_reason',
  bytesClientToDest: 'bytes_client_to_dest',
  bytesDestToClient: 'bytes_dest_to_client',
} as const;

export type LogFieldName = (typeof LogField)[keyof typeof LogField];

/** Values of the `policy_decision` field (the policy engine's richer result is policy/decision.ts). */
export type PolicyDecisionValue = 'allow' | 'deny';

/**
 * Every reason a CONNECT can be denied, with what it means for the operator reading the log. Kept as a
 * table (not only a type) so that metrics can pre-register one label per reason and docs can list them.
 */
export const DENY_REASONS = {
  no_client_certificate: 'the client sent no certificate: the connection is closed at the handshake',
  bad_client_certificate:
    'the client certificate is not a strict DER X.509 certificate: the connection is closed at the handshake',
  no_identity: 'the client certificate has no identity extension at policy.client_ext_oid',
  malformed_identity: 'the identity extension is not exactly one DER UTF8String',
  no_matching_permission:
    'no permission row matches this identity, destination and certificate key (SubjectPublicKeyInfo)',
  permission_revoked: 'the matching permission row is revoked',
  permission_expired: 'the matching permission row is past its not_after',
  permission_not_yet_valid: 'the matching permission row is before its not_before',
  bad_signature: "the permission row's signature does not verify with its signing key",
  signer_unknown: 'the signing key named by the permission row does not exist',
  signer_revoked: 'the signing key is revoked',
  signer_expired: 'the signing key is past its not_after',
  signer_not_yet_valid: 'the signing key is before its not_before',
  signer_bad_key: 'the signing key has an unsupported algorithm or an unusable public key',
  scope_missing: 'the signing key holds no active delegation for this destination',
  scope_insufficient: "the signing key's delegation window does not cover the permission's whole window",
  policy_error: 'the policy database failed (unreachable, query error, schema mismatch): fail closed',
  policy_timeout: 'the policy query or pool acquisition timed out: fail closed',
  egress_refused: 'the destination resolves to an address the egress rules forbid (e.g. loopback, private)',
} as const satisfies Record<string, string>;

export type DenyReason = keyof typeof DENY_REASONS;

/** All deny reasons, in declaration order. */
export const DENY_REASON_KINDS = Object.keys(DENY_REASONS) as readonly DenyReason[];
