import { z } from 'zod';

/**
 * The configuration file's shape, defaults and per-key checks. Every table is strict: an unknown key is
 * an error (interop contract), because a misspelt security setting silently ignored is worse than a
 * refusal to start.
 */

/**
 * The OTLP transports, named as OTEL_EXPORTER_OTLP_PROTOCOL names them. Here, with the keys that take
 * them (`observability.otlp_protocol`, the sidecar's too), so that config/ depends on no feature folder.
 */
export const OTLP_PROTOCOLS = ['grpc', 'http/protobuf', 'http/json'] as const;
export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];

const OID = /^(0|1|2)(\.(0|[1-9][0-9]*))+$/;

// Messages carry no key name: the loader prefixes every problem with its full key path
// (`policy.connect_timeout_ms` and `egress.connect_timeout_ms` share a leaf name).
const positiveInt = () =>
  z.number({ error: 'must be a number' }).int('must be a whole number').positive('must be > 0');
const nonNegativeInt = () =>
  z.number({ error: 'must be a number' }).int('must be a whole number').nonnegative('must be >= 0');

/** More processes than cores only add contention; 64 is far beyond any host this runs on. */
export const MAX_WORKERS = 64;
/** A quota window of at most 31 days: long enough for a monthly budget, bounded so slots stay few. */
export const MAX_QUOTA_WINDOW_S = 31 * 86_400;
const quotaWindow = () => positiveInt().max(MAX_QUOTA_WINDOW_S);

export const serverSchema = z.strictObject({
  /** `host:port` or `[ipv6]:port` to bind the TLS listener. */
  listen_addr: z.string().min(1),
  tls_cert_path: z.string().min(1),
  tls_key_path: z.string().min(1),
  handshake_timeout_ms: positiveInt().default(10_000),
  request_timeout_ms: positiveInt().default(10_000),
  /**
   * TLS session tickets: how long a returning client may resume without a full handshake, and how often
   * the ticket key is replaced. 0 turns resumption off. At most a day: a ticket is a bearer credential
   * for the session it resumes.
   */
  tls_session_lifetime_s: nonNegativeInt().max(86_400).default(300),
  tunnel_idle_timeout_s: positiveInt().default(900),
  shutdown_grace_s: nonNegativeInt().default(30),
  /** HTTP/2: concurrent CONNECT streams per client connection. */
  h2_max_concurrent_streams: positiveInt().max(10_000).default(256),
  /** HTTP/2: per-stream receive window (bytes) we advertise; bounds what one paused stream can buffer. */
  h2_stream_window_bytes: positiveInt()
    .min(65_535)
    .max(2 ** 31 - 1)
    .default(1_048_576),
  /**
   * HTTP/2: how many RST_STREAM frames a client may send in a burst, and how many per second after
   * it, before its connection is ended with GOAWAY (nghttp2's reset rate limit, CVE-2023-44487
   * "rapid reset"). A reset stream is free for the client and not for the gateway.
   */
  h2_reset_burst: positiveInt().max(100_000).default(1000),
  h2_reset_rate_per_s: positiveInt().max(100_000).default(33),
  /** HTTP/2: connection-level receive window (bytes). */
  h2_connection_window_bytes: positiveInt()
    .min(65_535)
    .max(2 ** 31 - 1)
    .default(16_777_216),
  /**
   * Concurrent TLS connections in total, counted from the TCP accept. Each also costs a file descriptor
   * (and each tunnel a second one upstream): keep it below half the process's descriptor limit.
   */
  max_connections: positiveInt().max(1_000_000).default(10_000),
  /** Concurrent TLS connections from one source address. */
  max_connections_per_source: positiveInt().max(1_000_000).default(1_000),
  /** Upper bound on any tunnel's life, whatever its permission says; 0 = unlimited. */
  max_tunnel_lifetime_s: nonNegativeInt().max(31_536_000).default(0),
  /**
   * SO_REUSEPORT on the agents' and the admin listener: a new gateway process can bind the same ports
   * while the old one drains (rolling restart without refused connections). false: a second process on
   * the port fails with EADDRINUSE instead of sharing it.
   */
  reuse_port: z.boolean({ error: 'must be true or false' }).default(true),
  /**
   * Processes serving the one port (node:cluster). More than one needs `rate_limit.shared = true` when any
   * limit is set, or each process would enforce the limits on its own (see gateway/workers.ts).
   */
  workers: positiveInt().max(MAX_WORKERS).default(1),
  /**
   * On SIGTERM/SIGINT, how long /readyz answers 503 before the listener closes, so that load balancers
   * stop sending agents before connections are refused; 0 = close at once.
   */
  drain_delay_s: nonNegativeInt().max(300).default(5),
});

export const observabilitySchema = z.strictObject({
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  /**
   * OTLP collector URL: for grpc its address (`http://collector:4317`), for http/* the base URL
   * (`/v1/traces` is added when it has no path). Absent: the OTEL_EXPORTER_OTLP_* variables, else no export.
   */
  otlp_endpoint: z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL' }).optional(),
  /** OTLP transport; absent: OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL, else grpc (what the original sends). */
  otlp_protocol: z.enum(OTLP_PROTOCOLS).optional(),
  /** Per-identity metric series (bytes, held time, open tunnels), for at most per_identity_metrics_max. */
  per_identity_metrics: z.boolean({ error: 'must be true or false' }).default(false),
  per_identity_metrics_max: positiveInt().max(100_000).default(1000),
  /**
   * Refusal lines (denies, bad requests, refused connections and handshakes) written in full per source
   * address per 10 s; the rest are counted in a `denies suppressed` line. 0 = write every one.
   */
  deny_log_limit: nonNegativeInt().max(1_000_000).default(50),
});

/** Shared with the loader, which reports the same rule when zod skipped it. */
export const EXACTLY_ONE_DATABASE_URL = 'set exactly one of policy.database_url and policy.database_url_env';

export const policySchema = z
  .strictObject({
    client_ext_oid: z
      .string()
      .regex(OID, 'must be a dotted OID such as 1.3.6.1.4.1.57264.1.1')
      .default('1.3.6.1.4.1.57264.1.1'),
    database_url: z.string().min(1).optional(),
    database_url_env: z
      .string()
      .regex(
        /^[A-Za-z_][A-Za-z0-9_]*$/,
        'must be an environment variable name such as AGENT_GATEWAY_DATABASE_URL',
      )
      .optional(),
    max_connections: positiveInt().max(1000).default(5),
    connect_timeout_ms: positiveInt().default(5000),
    pool_acquire_timeout_ms: positiveInt().default(1000),
    query_timeout_ms: positiveInt().default(500),
    /**
     * How long an allow may be reused without asking the registry (0 = every CONNECT queries). Used only
     * while the live check is healthy and the registry's change notifications arrive, which invalidate it;
     * denies are never cached. At most a minute.
     */
    decision_cache_ms: nonNegativeInt().max(60_000).default(10_000),
    /** How often every open tunnel's permission, signer and scope are re-checked (one batched query). */
    revalidation_interval_ms: positiveInt().min(100).max(1_000).default(500),
    /** How long open tunnels outlive an unreachable registry before they close (0 = at once). */
    revalidation_grace_s: nonNegativeInt().max(3_600).default(30),
  })
  .superRefine((p, ctx) => {
    // zod skips this refinement when another policy key already failed; the loader repeats the check on
    // the raw table so that every problem is reported in one run.
    if ((p.database_url === undefined) === (p.database_url_env === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['database_url'],
        message: EXACTLY_ONE_DATABASE_URL,
      });
    }
  });

/**
 * `[rate_limit.identities."<identity>"]`: one identity's overrides. Every key is optional and falls
 * back to `[rate_limit]`'s; the inheritance and the defaults of keys without one here are resolved in
 * config/rate-limit.ts, which also checks the rules that span keys (a rate needs a burst > 0).
 */
export const rateLimitIdentitySchema = z.strictObject({
  bytes_per_second: nonNegativeInt().optional(),
  burst_bytes: nonNegativeInt().optional(),
  download_bytes_per_second: nonNegativeInt().optional(),
  download_burst_bytes: nonNegativeInt().optional(),
  max_tunnels_per_identity: nonNegativeInt().optional(),
  upload_quota_bytes: nonNegativeInt().optional(),
  upload_quota_window_s: quotaWindow().optional(),
  download_quota_bytes: nonNegativeInt().optional(),
  download_quota_window_s: quotaWindow().optional(),
});

export const rateLimitSchema = z.strictObject({
  /** Upload (client → destination) per identity, bytes per second; 0 = off. */
  bytes_per_second: nonNegativeInt().default(0),
  burst_bytes: nonNegativeInt().default(1_048_576),
  /** Download (destination → client) per identity; absent = 0 = off. Burst absent = burst_bytes. */
  download_bytes_per_second: nonNegativeInt().optional(),
  download_burst_bytes: nonNegativeInt().optional(),
  /** Upload of all identities together; absent = 0 = off. Burst absent = burst_bytes. */
  total_bytes_per_second: nonNegativeInt().optional(),
  total_burst_bytes: nonNegativeInt().optional(),
  /** Concurrent tunnels per identity; absent = 256; 0 = unlimited. */
  max_tunnels_per_identity: nonNegativeInt().optional(),
  /**
   * Buckets, quotas and tunnel caps in the registry database (extension agent_gateway_ext), shared by every
   * gateway process using it and kept across restarts; absent = false (in-memory, per process).
   */
  shared: z.boolean({ error: 'must be true or false' }).optional(),
  /** Upload bytes per identity over any window of upload_quota_window_s (default a day); absent = 0 = off. */
  upload_quota_bytes: nonNegativeInt().optional(),
  upload_quota_window_s: quotaWindow().optional(),
  /** The same for downloads. */
  download_quota_bytes: nonNegativeInt().optional(),
  download_quota_window_s: quotaWindow().optional(),
  /** Per-identity overrides, keyed by the identity exactly as in the certificate (case-sensitive). */
  identities: z.record(z.string(), rateLimitIdentitySchema).optional(),
});

export const egressSchema = z.strictObject({
  /** CIDRs that may be dialled even though they are loopback/private/etc. */
  allow_cidrs: z.array(z.string()).default([]),
  /** CIDRs never dialled, whatever allow_cidrs says. */
  deny_cidrs: z.array(z.string()).default([]),
  connect_timeout_ms: positiveInt().default(10_000),
});

const envName = () =>
  z
    .string()
    .regex(
      /^[A-Za-z_][A-Za-z0-9_]*$/,
      'must be an environment variable name such as AGENT_GATEWAY_ADMIN_TOKEN',
    );

/**
 * `[admin]`: the operators' listener (health, readiness, tunnels, metrics, the dashboard), never the
 * agents' port. Off unless `listen_addr` is set; loopback-only unless it has TLS of its own; every
 * operation but /healthz and /readyz needs a bearer token read from the environment.
 */
export const adminSchema = z.strictObject({
  listen_addr: z.string().min(1).optional(),
  /** Variable holding the admin token (may close tunnels and revoke). */
  token_env: envName().default('AGENT_GATEWAY_ADMIN_TOKEN'),
  /** Variable holding a read-only token (may look, not act); unset = no read-only role. */
  readonly_token_env: envName().optional(),
  /** TLS for the admin listener; both or neither. Required to listen on a non-loopback address. */
  tls_cert_path: z.string().min(1).optional(),
  tls_key_path: z.string().min(1).optional(),
});

export const configSchema = z.strictObject({
  server: serverSchema,
  observability: observabilitySchema.default({
    log_level: 'info',
    deny_log_limit: 50,
    per_identity_metrics: false,
    per_identity_metrics_max: 1000,
  }),
  policy: policySchema,
  rate_limit: rateLimitSchema.default({ bytes_per_second: 0, burst_bytes: 1_048_576 }),
  egress: egressSchema.default({ allow_cidrs: [], deny_cidrs: [], connect_timeout_ms: 10_000 }),
  admin: adminSchema.default({ token_env: 'AGENT_GATEWAY_ADMIN_TOKEN' }),
});

export type GatewayConfig = z.infer<typeof configSchema>;
export type ServerConfig = GatewayConfig['server'];
export type PolicyConfig = GatewayConfig['policy'];
export type EgressConfig = GatewayConfig['egress'];
export type AdminConfig = GatewayConfig['admin'];
