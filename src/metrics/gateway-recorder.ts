import type { ConnectAttempt, ConnectRejected, GatewaySubscriber, Phase } from '../session/events.js';
import type { ConnectResult, GatewayMetrics } from './gateway-metrics.js';
import { monotonicMs, seconds } from './units.js';

/**
 * The metrics' subscriber to the gateway's events: each event moves a few counters, gauges or
 * histograms, in the turn it happens. Nothing here runs per relayed chunk: bytes are counted when a
 * tunnel closes (and read live from the open tunnels at scrape time, scrape-sources.ts).
 */
export function metricsSubscriber(m: GatewayMetrics, now: () => number = monotonicMs): GatewaySubscriber {
  const answered = (attempt: ConnectAttempt, result: ConnectResult, denyReason: string): void => {
    m.connects.labels(attempt.protocol, result, denyReason).inc();
    m.connectDuration.labels(attempt.protocol, result).observe(seconds(now() - attempt.startedAt));
    phase('policy', attempt.policy);
    phase('dns', attempt.dns);
    phase('dial', attempt.dial);
  };
  const phase = (name: 'policy' | 'dns' | 'dial', p: Phase | undefined): void => {
    // A phase cut short (the client left) has no end yet.
    if (p !== undefined && p.end >= p.start && p.end > 0)
      m.phaseDuration.labels(name).observe(seconds(p.end - p.start));
  };

  return {
    handshakeCompleted(e) {
      m.handshakes.labels(e.alpn, e.resumed ? 'true' : 'false').inc();
    },
    handshakeFailed(e) {
      m.handshakeFailures.labels(m.handshakeReason.of(e.error)).inc();
    },
    connectionRefused(e) {
      m.connectionsRefused.labels(e.reason).inc();
    },
    connectionIdle(e) {
      m.connectionsIdle.labels(e.reason).inc();
    },
    connectRejected(e) {
      const { result, denyReason } = resultOf(e);
      if (e.reason.kind === 'upstream_failed')
        m.upstreamFailures.labels(m.upstreamKind.of(e.reason.errorKind)).inc();
      answered(e.attempt, result, denyReason);
    },
    connectAbandoned(e) {
      answered(e.attempt, 'abandoned', '');
    },
    tunnelOpened(e) {
      answered(e.attempt, 'allowed', '');
      m.tunnelsOpened.labels(e.session.protocol).inc();
      m.openTunnels.labels(e.session.protocol).inc();
      m.identities?.opened(e.session.identity);
    },
    tunnelThrottled(e) {
      m.rateLimitHolds.labels(e.direction, e.limit).inc();
    },
    tunnelClosed(e) {
      const { session, throttle } = e;
      m.openTunnels.labels(session.protocol).dec();
      m.tunnelsClosed.labels(e.cause).inc();
      m.tunnelDuration.observe(seconds(e.durationMs));
      m.bytes.add(['client_to_dest'], e.bytesClientToDest);
      m.bytes.add(['dest_to_client'], e.bytesDestToClient);
      const heldUp = throttle?.clientToDestThrottledMs ?? 0;
      const heldDown = throttle?.destToClientThrottledMs ?? 0;
      if (heldUp > 0) m.heldSeconds.labels('client_to_dest').inc(heldUp / 1000);
      if (heldDown > 0) m.heldSeconds.labels('dest_to_client').inc(heldDown / 1000);
      m.identities?.closed(session.identity, e.bytesClientToDest, e.bytesDestToClient, heldUp, heldDown);
    },
    registryStatus(e) {
      if (!e.available) m.registryOutages.inc();
    },
    registryQuery(e) {
      m.registryQueries.labels(e.outcome).inc();
      m.registryQueryDuration.labels(e.outcome).observe(seconds(e.durationMs));
    },
    budgetLease(e) {
      m.budgetLeaseDuration.labels(e.bucket, e.ok ? 'ok' : 'error').observe(seconds(e.latencyMs));
    },
    quotaExhausted(e) {
      m.budgetQuotaExhausted.labels(e.direction).inc();
    },
    budgetStoreStatus(e) {
      if (!e.available) m.budgetStoreOutages.inc();
    },
    operatorAction(e) {
      m.operatorActions.labels(m.operatorAction.of(e.action)).inc();
    },
  };
}

function resultOf(e: ConnectRejected): { result: ConnectResult; denyReason: string } {
  const { reason } = e;
  switch (reason.kind) {
    case 'denied':
      return { result: 'denied', denyReason: reason.denyReason };
    case 'upstream_failed':
      return { result: 'upstream_failed', denyReason: '' };
    default:
      return { result: reason.kind, denyReason: '' };
  }
}
