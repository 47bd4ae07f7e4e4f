import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { DENY_REASON_KINDS } from '../observability/events.js';
import type { TunnelCloseCause } from '../session/events.js';
import type { TunnelProtocol } from '../session/tunnel-session.js';
import { BoundedLabel, isErrorCode } from './bounded-labels.js';
import { IdentitySeries } from './identity-series.js';
import { LiveCounter } from './live-counter.js';
import { DURATION_BUCKETS_S, LATENCY_BUCKETS_S } from './units.js';

export const PREFIX = 'agent_gateway_';

export const PROTOCOLS: readonly TunnelProtocol[] = ['HTTP/1.1', 'HTTP/2'];

/** Every close cause, so each series exists at 0 from the first scrape; checked against the type below. */
export const CLOSE_CAUSES = [
  'completed',
  'idle_timeout',
  'client_error',
  'dest_error',
  'aborted',
  'shutdown',
  'revoked',
  'expired',
  'revalidation_failed',
  'operator',
  'max_lifetime',
] as const satisfies readonly TunnelCloseCause[];
// A cause added to TunnelCloseCause and not here fails to compile.
const allCauses: Exclude<TunnelCloseCause, (typeof CLOSE_CAUSES)[number]> extends never ? true : never = true;
void allCauses;

/** What `result` a CONNECT ended with (the `connects_total` label). */
export const CONNECT_RESULTS = [
  'allowed',
  'denied',
  'bad_request',
  'method_not_allowed',
  'too_many_tunnels',
  'over_quota',
  'upstream_failed',
  'budget_unavailable',
  'internal_error',
  'abandoned',
] as const;
export type ConnectResult = (typeof CONNECT_RESULTS)[number];

export const PHASES = ['policy', 'dns', 'dial'] as const;
export const DIRECTIONS = ['client_to_dest', 'dest_to_client'] as const;

export interface PerIdentityOptions {
  readonly enabled: boolean;
  /** Identities with series of their own; later ones are counted under identity="" (see IdentitySeries). */
  readonly maxIdentities: number;
}

/**
 * The gateway's Prometheus metrics (prom-client), in a registry of their own. This file defines them and
 * pre-registers every label value known in advance, so that a deny reason that never happened reads 0
 * rather than being absent; gateway-recorder.ts feeds them from the gateway's events and scrape-sources.ts
 * fills the ones read at scrape time.
 */
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly connects: Counter<'protocol' | 'result' | 'deny_reason'>;
  readonly connectDuration: Histogram<'protocol' | 'result'>;
  readonly phaseDuration: Histogram<'phase'>;
  readonly upstreamFailures: Counter<'error_kind'>;
  readonly handshakes: Counter<'alpn' | 'resumed'>;
  readonly handshakeFailures: Counter<'reason'>;
  readonly connectionsRefused: Counter<'reason'>;
  readonly connectionsIdle: Counter<'reason'>;
  readonly openTunnels: Gauge<'protocol'>;
  readonly tunnelsOpened: Counter<'protocol'>;
  readonly tunnelsClosed: Counter<'cause'>;
  readonly tunnelDuration: Histogram;
  readonly bytes: LiveCounter<'direction'>;
  readonly rateLimitHolds: Counter<'direction' | 'limit'>;
  readonly heldSeconds: Counter<'direction'>;
  readonly tunnelsHeld: Gauge;
  readonly registryQueries: Counter<'outcome'>;
  readonly registryQueryDuration: Histogram<'outcome'>;
  readonly registryUp: Gauge;
  readonly registryOutages: Counter;
  readonly registryPoolInUse: Gauge;
  readonly registryPoolWaiting: Gauge;
  readonly registryPoolSize: Gauge;
  readonly liveCheckHealthy: Gauge;
  readonly liveCheckMode: Gauge<'mode'>;
  readonly ready: Gauge;
  readonly readinessCheck: Gauge<'check'>;
  readonly budgetLeaseDuration: Histogram<'bucket' | 'outcome'>;
  readonly budgetQuotaExhausted: Counter<'direction'>;
  readonly budgetStoreOutages: Counter;
  readonly traceSpans: LiveCounter<'outcome'>;
  readonly operatorActions: Counter<'action'>;
  readonly identities: IdentitySeries | undefined;
  /** Handshake failure reasons are error codes from OpenSSL or Node: bounded, the rest are `other`. */
  readonly handshakeReason = new BoundedLabel(64, 'other', isErrorCode);
  /** Upstream error kinds are ours (dial.ts, resolve.ts), but bounded all the same. */
  readonly upstreamKind = new BoundedLabel(32, 'other');
  readonly operatorAction = new BoundedLabel(32, 'other');

  constructor(perIdentity: PerIdentityOptions) {
    const registers = [this.registry];
    const counter = <T extends string>(name: string, help: string, labelNames: readonly T[] = []) =>
      new Counter<T>({ name: PREFIX + name, help, labelNames, registers });
    const gauge = <T extends string>(name: string, help: string, labelNames: readonly T[] = []) =>
      new Gauge<T>({ name: PREFIX + name, help, labelNames, registers });
    const histogram = <T extends string>(
      name: string,
      help: string,
      labelNames: readonly T[],
      buckets: number[],
    ) => new Histogram<T>({ name: PREFIX + name, help, labelNames, buckets, registers });

    this.connects = counter(
      'connects_total',
      'CONNECT requests answered, by protocol, result and (for result="denied") deny reason',
      ['protocol', 'result', 'deny_reason'],
    );
    this.connectDuration = histogram(
      'connect_duration_seconds',
      'From the CONNECT request to its answer (200 or refusal): the decision latency',
      ['protocol', 'result'],
      LATENCY_BUCKETS_S,
    );
    this.phaseDuration = histogram(
      'connect_phase_duration_seconds',
      'Phases of a CONNECT decision: policy (registry query or cached allow, signature check), dns, dial',
      ['phase'],
      LATENCY_BUCKETS_S,
    );
    this.upstreamFailures = counter(
      'connect_upstream_failures_total',
      'CONNECTs answered 502: the destination could not be resolved or dialled, by error kind',
      ['error_kind'],
    );
    this.handshakes = counter('tls_handshakes_total', 'TLS handshakes completed with a client certificate', [
      'alpn',
      'resumed',
    ]);
    this.handshakeFailures = counter(
      'tls_handshake_failures_total',
      'TLS handshakes that failed, by OpenSSL/Node error code ("other" beyond 64 codes)',
      ['reason'],
    );
    this.connectionsRefused = counter(
      'connections_refused_total',
      'Connections closed before any CONNECT: no or bad client certificate, connection caps',
      ['reason'],
    );
    this.connectionsIdle = counter(
      'connections_idle_closed_total',
      'Connections closed for carrying no CONNECT (request_timeout) or having no identity',
      ['reason'],
    );
    this.openTunnels = gauge('open_tunnels', 'Tunnels open now', ['protocol']);
    this.tunnelsOpened = counter('tunnels_opened_total', 'Tunnels opened (CONNECT answered 200)', [
      'protocol',
    ]);
    this.tunnelsClosed = counter('tunnels_closed_total', 'Tunnels closed, by close cause', ['cause']);
    this.tunnelDuration = new Histogram({
      name: `${PREFIX}tunnel_duration_seconds`,
      help: 'How long tunnels were open, observed when they close',
      buckets: DURATION_BUCKETS_S,
      registers,
    });
    const bytes = counter(
      'tunnel_bytes_total',
      'Bytes relayed, by direction: closed tunnels plus the live counters of open ones at scrape time',
      ['direction'],
    );
    for (const direction of DIRECTIONS) bytes.labels(direction).inc(0);
    this.bytes = new LiveCounter(bytes);
    this.rateLimitHolds = counter(
      'rate_limit_holds_total',
      'Tunnels first held by a rate limit (once per tunnel and direction), by direction and limit',
      ['direction', 'limit'],
    );
    this.heldSeconds = counter(
      'rate_limit_held_seconds_total',
      'Time tunnel directions spent held by a rate limit, counted when each tunnel closes',
      ['direction'],
    );
    this.tunnelsHeld = gauge('tunnels_held', 'Open tunnels with a direction held by a rate limit now');
    this.registryQueries = counter(
      'registry_queries_total',
      'Registry queries (CONNECT decisions and re-checks), by outcome: ok, error, timeout',
      ['outcome'],
    );
    this.registryQueryDuration = histogram(
      'registry_query_duration_seconds',
      'Registry query time once it was handed to a pooled connection, by outcome',
      ['outcome'],
      LATENCY_BUCKETS_S,
    );
    this.registryUp = gauge(
      'registry_up',
      '1 while the registry answers at the schema this gateway reads, else 0 (CONNECTs are denied)',
    );
    this.registryOutages = counter('registry_outages_total', 'Times the registry stopped answering');
    this.registryPoolInUse = gauge('registry_pool_in_use', 'Registry queries running now');
    this.registryPoolWaiting = gauge(
      'registry_pool_waiting',
      'Registry queries waiting for a pooled connection now',
    );
    this.registryPoolSize = gauge('registry_pool_size', 'Registry pool size (policy.max_connections)');
    this.liveCheckHealthy = gauge(
      'live_check_healthy',
      '1 while re-checks of open tunnels succeed, else 0 (tunnels close after policy.revalidation_grace_s)',
    );
    this.liveCheckMode = gauge('live_check_mode', 'The live check mode now (1 for the current one)', [
      'mode',
    ]);
    this.ready = gauge('ready', '1 while /readyz answers 200');
    this.readinessCheck = gauge('readiness_check', 'Each /readyz check: 1 ok, 0 failing', ['check']);
    this.budgetLeaseDuration = histogram(
      'budget_lease_duration_seconds',
      'Lease calls to the shared byte budget store (PostgreSQL), by bucket (upload, download, total) and ' +
        'outcome: ok, error (the store did not answer; nothing was granted)',
      ['bucket', 'outcome'],
      LATENCY_BUCKETS_S,
    );
    this.budgetQuotaExhausted = counter(
      'budget_quota_exhausted_total',
      'Times an identity spent its shared byte quota, by direction (upload, download): once per identity, ' +
        'direction and quota window across all gateways',
      ['direction'],
    );
    this.budgetStoreOutages = counter(
      'budget_store_outages_total',
      'Times the shared budget store stopped answering (CONNECTs are answered 503 until it is back)',
    );
    this.traceSpans = new LiveCounter(traceSpansCounter(this.registry, PREFIX));
    this.operatorActions = counter('operator_actions_total', 'Actions taken through the admin listener', [
      'action',
    ]);
    this.identities = perIdentity.enabled
      ? new IdentitySeries(this.registry, PREFIX, perIdentity.maxIdentities)
      : undefined;
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.preRegister();
  }

  private preRegister(): void {
    for (const protocol of PROTOCOLS) {
      for (const result of CONNECT_RESULTS) {
        if (result === 'denied') {
          for (const reason of DENY_REASON_KINDS) {
            this.connects.labels(protocol, result, reason).inc(0);
          }
        } else {
          this.connects.labels(protocol, result, '').inc(0);
        }
      }
      for (const result of ['allowed', 'denied'] as const) this.connectDuration.zero({ protocol, result });
      this.openTunnels.labels(protocol).set(0);
      this.tunnelsOpened.labels(protocol).inc(0);
    }
    for (const phase of PHASES) this.phaseDuration.zero({ phase });
    for (const cause of CLOSE_CAUSES) this.tunnelsClosed.labels(cause).inc(0);
    for (const direction of DIRECTIONS) {
      this.heldSeconds.labels(direction).inc(0);
    }
    for (const reason of [
      'no_client_certificate',
      'bad_client_certificate',
      'max_connections',
      'max_connections_per_source',
    ]) {
      this.connectionsRefused.labels(reason).inc(0);
    }
    for (const reason of ['request_timeout', 'no_identity']) this.connectionsIdle.labels(reason).inc(0);
    for (const outcome of ['ok', 'error', 'timeout']) this.registryQueries.labels(outcome).inc(0);
    this.registryOutages.inc(0);
    for (const direction of ['upload', 'download']) this.budgetQuotaExhausted.labels(direction).inc(0);
    this.budgetStoreOutages.inc(0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Runs before each scrape to read what is only known then (scrape-sources.ts). */
  beforeScrape: () => void = () => {};

  /** The text exposition, after the scrape-time readings. */
  render(): Promise<string> {
    this.beforeScrape();
    return this.registry.metrics();
  }
}

/** Span export outcomes, counted by the trace pipeline and read at scrape time (gateway and sidecar). */
export function traceSpansCounter(registry: Registry, prefix: string): Counter<'outcome'> {
  const c = new Counter({
    name: `${prefix}trace_spans_total`,
    help:
      'Spans ended for OTLP export, by outcome: exported, failed (the collector refused them or was ' +
      'unreachable), dropped (the bounded export queue was full)',
    labelNames: ['outcome'],
    registers: [registry],
  });
  for (const outcome of TRACE_OUTCOMES) c.labels(outcome).inc(0);
  return c;
}

export const TRACE_OUTCOMES = ['exported', 'failed', 'dropped'] as const;

/** The trace pipeline's running totals (tracing/pipeline.ts SpanCounts has this shape). */
export type SpanTotals = Readonly<Record<(typeof TRACE_OUTCOMES)[number], number>>;

export function scrapeSpanTotals(counter: LiveCounter<'outcome'>, totals: SpanTotals | undefined): void {
  if (totals === undefined) return;
  counter.scrape(TRACE_OUTCOMES.map((o) => [[o], totals[o]] as const));
}
