import { z } from 'zod';

/**
 * The configuration file's shape, defaults and per-key checks. Every table is strict: an unknown key is
 * an error (interop contract), because a misspelt security setting silently ignored is worse than a
 * refusal to start.
 */

const OID = /^(0|1|2)(\.(0|[1-9][0-9]*))+$/;

const positiveInt = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int(`${what} must be a whole number`)
    .positive(`${what} must be > 0`);
const nonNegativeInt = (what: string) =>
  z
    .number({ error: `${what} must be a number` })
    .int(`${what} must be a whole number`)
    .nonnegative(`${what} must be >= 0`);

export const serverSchema = z.strictObject({
  /** `host:port` or `[ipv6]:port` to bind the TLS listener. */
  listen_addr: z.string().min(1),
  tls_cert_path: z.string().min(1),
  tls_key_path: z.string().min(1),
  handshake_timeout_ms: positiveInt('handshake_timeout_ms').default(10_000),
  request_timeout_ms: positiveInt('request_timeout_ms').default(10_000),
  tunnel_idle_timeout_s: positiveInt('tunnel_idle_timeout_s').default(900),
  shutdown_grace_s: nonNegativeInt('shutdown_grace_s').default(30),
  /** HTTP/2: concurrent CONNECT streams per client connection. */
  h2_max_concurrent_streams: positiveInt('h2_max_concurrent_streams').max(10_000).default(256),
  /** HTTP/2: per-stream receive window (bytes) we advertise; bounds what one paused stream can buffer. */
  h2_stream_window_bytes: positiveInt('h2_stream_window_bytes')
    .min(65_535)
    .max(2 ** 31 - 1)
    .default(1_048_576),
  /** HTTP/2: connection-level receive window (bytes). */
  h2_connection_window_bytes: positiveInt('h2_connection_window_bytes')
    .min(65_535)
    .max(2 ** 31 - 1)
    .default(16_777_216),
});

export const observabilitySchema = z.strictObject({
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
  otlp_endpoint: z.string().url('otlp_endpoint must be a URL').optional(),
});

export const policySchema = z
  .strictObject({
    client_ext_oid: z
      .string()
      .regex(OID, 'client_ext_oid must be a dotted OID such as 1.3.6.1.4.1.57264.1.1')
      .default('1.3.6.1.4.1.57264.1.1'),
    database_url: z.string().min(1).optional(),
    database_url_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'database_url_env must be an environment variable name')
      .optional(),
    max_connections: positiveInt('max_connections').max(1000).default(5),
    connect_timeout_ms: positiveInt('connect_timeout_ms').default(5000),
    pool_acquire_timeout_ms: positiveInt('pool_acquire_timeout_ms').default(1000),
    query_timeout_ms: positiveInt('query_timeout_ms').default(500),
  })
  .superRefine((p, ctx) => {
    if ((p.database_url === undefined) === (p.database_url_env === undefined)) {
      ctx.addIssue({
        code: 'custom',
        path: ['database_url'],
        message: 'set exactly one of policy.database_url and policy.database_url_env',
      });
    }
  });

export const rateLimitSchema = z.strictObject({
  bytes_per_second: nonNegativeInt('bytes_per_second').default(0),
  burst_bytes: nonNegativeInt('burst_bytes').default(1_048_576),
});

export const egressSchema = z.strictObject({
  /** CIDRs that may be dialled even though they are loopback/private/etc. */
  allow_cidrs: z.array(z.string()).default([]),
  /** CIDRs never dialled, whatever allow_cidrs says. */
  deny_cidrs: z.array(z.string()).default([]),
  connect_timeout_ms: positiveInt('connect_timeout_ms').default(10_000),
});

export const configSchema = z.strictObject({
  server: serverSchema,
  observability: observabilitySchema.default({ log_level: 'info' }),
  policy: policySchema,
  rate_limit: rateLimitSchema.default({ bytes_per_second: 0, burst_bytes: 1_048_576 }),
  egress: egressSchema.default({ allow_cidrs: [], deny_cidrs: [], connect_timeout_ms: 10_000 }),
});

export type GatewayConfig = z.infer<typeof configSchema>;
export type ServerConfig = GatewayConfig['server'];
export type PolicyConfig = GatewayConfig['policy'];
export type EgressConfig = GatewayConfig['egress'];
