import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDestination } from '../../src/destination/normalize.js';
import { GatewayMetrics } from '../../src/metrics/gateway-metrics.js';
import { metricsSubscriber } from '../../src/metrics/gateway-recorder.js';
import { attachScrapeSources, type LiveTunnel } from '../../src/metrics/scrape-sources.js';
import { DENY_REASON_KINDS } from '../../src/observability/events.js';
import { type ConnectAttempt, GatewayEvents, type TunnelClosed } from '../../src/session/events.js';
import type { TunnelSession } from '../../src/session/tunnel-session.js';

/** The value of one series in the text format, or undefined when the series is absent. */
function value(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

function setup(perIdentity = { enabled: false, maxIdentities: 1000 }) {
  const metrics = new GatewayMetrics(perIdentity);
  const events = new GatewayEvents((error) => {
    throw error;
  });
  let clock = 0;
  events.subscribe(metricsSubscriber(metrics, () => clock));
  const open: LiveTunnel[] = [];
  attachScrapeSources(metrics, {
    openTunnels: () => open,
    registryPool: () => ({ inUse: 1, waiting: 2, size: 5 }),
    registryUp: () => true,
    liveCheck: () => ({ healthy: true, mode: 'polling' }),
    readiness: () => [
      { name: 'listening', ok: true },
      { name: 'draining', ok: false },
    ],
    traceSpans: () => ({ exported: 7, failed: 1, dropped: 2 }),
  });
  return { metrics, events, open, setClock: (t: number) => (clock = t) };
}

function attempt(protocol: 'HTTP/1.1' | 'HTTP/2' = 'HTTP/1.1'): ConnectAttempt {
  return {
    protocol,
    peerAddr: '127.0.0.1:1',
    identity: 'agent-a',
    claimedIdentity: null,
    spki: Buffer.alloc(0),
    spkiFingerprint: '',
    rawAuthority: 'a.example',
    trace: undefined,
    startedAt: 0,
    destination: parseDestination('a.example'),
    grant: undefined,
    policy: { start: 0, end: 2 },
    dns: undefined,
    dial: undefined,
  };
}

function session(identity: string, protocol: 'HTTP/1.1' | 'HTTP/2' = 'HTTP/1.1'): TunnelSession {
  return { id: identity, identity, protocol } as unknown as TunnelSession;
}

function closed(s: TunnelSession, up: number, down: number, held = 0): TunnelClosed {
  return {
    session: s,
    cause: 'completed',
    reason: undefined,
    error: undefined,
    bytesClientToDest: up,
    bytesDestToClient: down,
    durationMs: 10,
    throttle:
      held > 0
        ? { throttledMs: held, clientToDestThrottledMs: held, destToClientThrottledMs: 0, maxHeldBytes: 0 }
        : undefined,
  };
}

describe('gateway metrics', () => {
  test('every known label value exists at 0 from the start', async () => {
    const { metrics } = setup();
    const text = await metrics.render();
    for (const reason of DENY_REASON_KINDS) {
      for (const protocol of ['HTTP/1.1', 'HTTP/2']) {
        const series = `agent_gateway_connects_total{protocol="${protocol}",result="denied",deny_reason="${reason}"}`;
        assert.equal(value(text, series), 0, series);
      }
    }
    for (const cause of [
      'revoked',
      'expired',
      'revalidation_failed',
      'operator',
      'max_lifetime',
      'shutdown',
    ]) {
      assert.equal(value(text, `agent_gateway_tunnels_closed_total{cause="${cause}"}`), 0, cause);
    }
    assert.equal(value(text, 'agent_gateway_connect_phase_duration_seconds_count{phase="dns"}'), 0);
    assert.match(text, /^agent_gateway_process_cpu_seconds_total /m, 'process metrics under the prefix');
  });

  test('CONNECTs by protocol, result and reason, with the decision latency and its phases', async () => {
    const { metrics, events, setClock } = setup();
    setClock(3);
    events.emit('connectRejected', {
      attempt: attempt(),
      status: 403,
      reason: { kind: 'denied', denyReason: 'bad_signature' },
      detail: undefined,
    });
    events.emit('connectRejected', {
      attempt: { ...attempt('HTTP/2'), policy: undefined },
      status: 502,
      reason: { kind: 'upstream_failed', errorKind: 'dns_not_found' },
      detail: undefined,
    });
    const text = await metrics.render();
    assert.equal(
      value(
        text,
        'agent_gateway_connects_total{protocol="HTTP/1.1",result="denied",deny_reason="bad_signature"}',
      ),
      1,
    );
    assert.equal(
      value(text, 'agent_gateway_connects_total{protocol="HTTP/2",result="upstream_failed",deny_reason=""}'),
      1,
    );
    assert.equal(value(text, 'agent_gateway_connect_upstream_failures_total{error_kind="dns_not_found"}'), 1);
    assert.equal(
      value(text, 'agent_gateway_connect_duration_seconds_sum{protocol="HTTP/1.1",result="denied"}'),
      0.003,
    );
    assert.equal(value(text, 'agent_gateway_connect_phase_duration_seconds_count{phase="policy"}'), 1);
    assert.equal(value(text, 'agent_gateway_connect_phase_duration_seconds_sum{phase="policy"}'), 0.002);
  });

  test('bytes: closed tunnels plus the live counters of open ones, never going down when a tunnel closes', async () => {
    const { metrics, events, open } = setup();
    const s = session('agent-a');
    events.emit('tunnelOpened', { session: s, attempt: attempt() });
    const live = { session: s, bytesClientToDest: 100, bytesDestToClient: 5, throttled: true };
    open.push(live);
    let text = await metrics.render();
    assert.equal(value(text, 'agent_gateway_tunnel_bytes_total{direction="client_to_dest"}'), 100);
    assert.equal(value(text, 'agent_gateway_open_tunnels{protocol="HTTP/1.1"}'), 1);
    assert.equal(value(text, 'agent_gateway_tunnels_held'), 1);
    open.pop();
    events.emit('tunnelClosed', closed(s, 150, 5, 2500));
    text = await metrics.render();
    assert.equal(value(text, 'agent_gateway_tunnel_bytes_total{direction="client_to_dest"}'), 150);
    assert.equal(value(text, 'agent_gateway_tunnel_bytes_total{direction="dest_to_client"}'), 5);
    assert.equal(value(text, 'agent_gateway_open_tunnels{protocol="HTTP/1.1"}'), 0);
    assert.equal(value(text, 'agent_gateway_tunnels_closed_total{cause="completed"}'), 1);
    assert.equal(value(text, 'agent_gateway_rate_limit_held_seconds_total{direction="client_to_dest"}'), 2.5);
    assert.equal(
      value(text, 'agent_gateway_connects_total{protocol="HTTP/1.1",result="allowed",deny_reason=""}'),
      1,
    );
  });

  test('scrape-time readings: pool, registry, live check, readiness, span export totals', async () => {
    const { metrics } = setup();
    const text = await metrics.render();
    assert.equal(value(text, 'agent_gateway_registry_pool_in_use'), 1);
    assert.equal(value(text, 'agent_gateway_registry_pool_waiting'), 2);
    assert.equal(value(text, 'agent_gateway_registry_up'), 1);
    assert.equal(value(text, 'agent_gateway_live_check_mode{mode="polling"}'), 1);
    assert.equal(value(text, 'agent_gateway_live_check_mode{mode="down"}'), 0);
    assert.equal(value(text, 'agent_gateway_ready'), 0, 'one check fails');
    assert.equal(value(text, 'agent_gateway_readiness_check{check="draining"}'), 0);
    assert.equal(value(text, 'agent_gateway_trace_spans_total{outcome="dropped"}'), 2);
  });

  test('label values from outside are bounded: handshake errors, and identities past the limit', async () => {
    const { metrics, events } = setup({ enabled: true, maxIdentities: 2 });
    for (let i = 0; i < 100; i++) events.emit('handshakeFailed', { peerAddr: 'x', error: `ERR_SSL_${i}` });
    events.emit('handshakeFailed', { peerAddr: 'x', error: 'a message, not a code\n{"forged":1}' });
    for (const id of ['a', 'b', 'c', 'd']) {
      const s = session(id);
      events.emit('tunnelOpened', { session: s, attempt: attempt() });
      events.emit('tunnelClosed', closed(s, 10, 1));
    }
    const text = await metrics.render();
    const reasons = text
      .split('\n')
      .filter((l) => l.startsWith('agent_gateway_tls_handshake_failures_total{'));
    assert.equal(reasons.length, 65, '64 codes and "other"');
    assert.equal(value(text, 'agent_gateway_tls_handshake_failures_total{reason="other"}'), 100 - 64 + 1);
    assert.equal(
      value(text, 'agent_gateway_identity_tunnel_bytes_total{identity="a",direction="client_to_dest"}'),
      10,
    );
    assert.equal(
      value(text, 'agent_gateway_identity_tunnel_bytes_total{identity="b",direction="client_to_dest"}'),
      10,
    );
    assert.equal(
      value(text, 'agent_gateway_identity_tunnel_bytes_total{identity="",direction="client_to_dest"}'),
      20,
    );
    assert.equal(
      value(text, 'agent_gateway_identity_tunnel_bytes_total{identity="c",direction="client_to_dest"}'),
      undefined,
    );
  });

  test('the budget lease hook: a budgetLease event lands in the lease latency histogram', async () => {
    const { metrics, events } = setup();
    events.emit('budgetLease', {
      identity: 'spiffe://example.org/agent',
      bucket: 'upload',
      requestedBytes: 65536,
      grantedBytes: 65536,
      latencyMs: 0.5,
      ok: true,
    });
    events.emit('budgetLease', {
      identity: '',
      bucket: 'total',
      requestedBytes: 65536,
      grantedBytes: 0,
      latencyMs: 2,
      ok: false,
    });
    const text = await metrics.render();
    assert.equal(
      value(text, 'agent_gateway_budget_lease_duration_seconds_count{bucket="upload",outcome="ok"}'),
      1,
    );
    assert.equal(
      value(text, 'agent_gateway_budget_lease_duration_seconds_count{bucket="total",outcome="error"}'),
      1,
    );
  });

  test('shared budgets: a spent quota and a store outage are counted', async () => {
    const { metrics, events } = setup();
    let text = await metrics.render();
    assert.equal(value(text, 'agent_gateway_budget_quota_exhausted_total{direction="upload"}'), 0);
    assert.equal(value(text, 'agent_gateway_budget_store_outages_total'), 0);
    events.emit('quotaExhausted', {
      identity: 'spiffe://example.org/agent',
      direction: 'upload',
      quotaBytes: 1000,
      windowS: 60,
      usedBytes: 1000,
      retryAfterS: 12,
    });
    events.emit('budgetStoreStatus', { available: false, error: 'connection refused' });
    events.emit('budgetStoreStatus', { available: true, error: undefined });
    text = await metrics.render();
    assert.equal(value(text, 'agent_gateway_budget_quota_exhausted_total{direction="upload"}'), 1);
    assert.equal(value(text, 'agent_gateway_budget_quota_exhausted_total{direction="download"}'), 0);
    assert.equal(value(text, 'agent_gateway_budget_store_outages_total'), 1);
  });
});
