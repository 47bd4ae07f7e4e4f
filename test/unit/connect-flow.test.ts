import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { rateLimitSettings } from '../../src/config/rate-limit.js';
import { configSchema } from '../../src/config/schema.js';
import { EgressGuard } from '../../src/egress/guard.js';
import type { LookupFn } from '../../src/egress/resolve.js';
import { auditLogSubscriber } from '../../src/observability/audit-log.js';
import type { PolicyDecision, PolicyEngine } from '../../src/policy/engine.js';
import { newAttempt } from '../../src/proxy/connect-attempt.js';
import {
  abandonTunnel,
  type ConnectFlowDeps,
  type ConnectOutcome,
  runConnectFlow,
} from '../../src/proxy/connect-flow.js';
import type { ConnectionInfo } from '../../src/proxy/connection-info.js';
import { RateLimiter } from '../../src/ratelimit/limiter.js';
import { GatewayEvents } from '../../src/session/events.js';
import type { TunnelProtocol } from '../../src/session/tunnel-session.js';
import type { TraceContext } from '../../src/tracecontext/traceparent.js';

/**
 * The CONNECT decision with its collaborators faked: which status each failure gets, what is published
 * (and so logged by the audit subscriber), and above all the order: no DNS lookup and no dial for a
 * CONNECT the policy denies.
 */
let server: Server;
let port: number;

before(async () => {
  server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

interface Harness {
  deps: ConnectFlowDeps;
  logs: Array<Record<string, unknown>>;
  lookups: string[];
  decisions: Array<[string, string]>;
}

function harness(decision: PolicyDecision, opts: { allow?: string[]; answers?: string[] } = {}): Harness {
  const logs: Array<Record<string, unknown>> = [];
  const lookups: string[] = [];
  const decisions: Array<[string, string]> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const policy: PolicyEngine = {
    decide: async (identity, _spki, destination) => {
      decisions.push([identity, destination]);
      return decision;
    },
    recheck: async () => ({ ok: true, verdicts: [] }),
    setCacheGate: () => {},
    invalidateCache: () => {},
    forgetPermissions: () => {},
    close: async () => {},
  };
  const events = new GatewayEvents();
  events.subscribe(auditLogSubscriber(pino({ level: 'info' }, sink), { refusalsPerSource: 0 }));
  const lookup: LookupFn = async (host) => {
    lookups.push(host);
    return (opts.answers ?? ['127.0.0.1']).map((address) => ({
      address,
      family: address.includes(':') ? 6 : 4,
    }));
  };
  return {
    deps: {
      policy,
      guard: new EgressGuard({ allowCidrs: opts.allow ?? ['127.0.0.0/8'], denyCidrs: [], ownAddresses: [] }),
      connectTimeoutMs: 2000,
      lookup,
      events,
    },
    logs,
    lookups,
    decisions,
  };
}

const ALLOW: PolicyDecision = {
  allowed: true,
  permissionId: 'perm-1',
  signingKeyId: 'org-a',
  scopeId: '7',
  validUntilMono: Number.POSITIVE_INFINITY,
  endsWith: 'permission',
  cached: false,
};
const DENY: PolicyDecision = { allowed: false, reason: 'no_matching_permission', detail: 'none' };

function info(identity: string | null, problem: 'missing' | 'malformed' | null = null): ConnectionInfo {
  return {
    identity,
    identityProblem: problem,
    claimedIdentity: problem === 'malformed' ? Buffer.from('\x0c\x03bad') : null,
    spki: Buffer.from([0x30]),
    spkiFingerprint: 'f'.repeat(64),
    peerAddr: '127.0.0.1:5',
    busy: 0,
    idleTimer: undefined,
    armIdle: () => {},
  };
}

const TRACE: TraceContext = { traceId: 'a'.repeat(32), parentSpanId: 'b'.repeat(16), flags: 1 };

function request(
  authority: string,
  who: ConnectionInfo = info('agent-a'),
  opts: { protocol?: TunnelProtocol; trace?: TraceContext; cancelled?: () => boolean } = {},
) {
  return {
    attempt: newAttempt(who, opts.protocol ?? 'HTTP/2', authority, opts.trace),
    cancelled: opts.cancelled ?? (() => false),
  };
}

async function flow(
  h: Harness,
  authority: string,
  who: ConnectionInfo = info('agent-a'),
): Promise<ConnectOutcome> {
  const outcome = await runConnectFlow(h.deps, request(authority, who, { trace: TRACE }));
  if (outcome.kind === 'tunnel') outcome.upstream.destroy();
  // pino writes asynchronously to the sink; let it deliver.
  await new Promise((r) => setImmediate(r));
  return outcome;
}

test('allowed: normalized destination to the policy, vetted address dialled, grant and trace handed on', async () => {
  const h = harness(ALLOW, { answers: ['127.0.0.1'] });
  const outcome = await flow(h, `LocalHost:${port}`);
  assert.equal(outcome.kind, 'tunnel');
  assert.deepEqual(h.decisions, [['agent-a', `localhost:${port}`]]);
  assert.deepEqual(h.lookups, ['localhost']);
  if (outcome.kind !== 'tunnel') return;
  assert.equal(outcome.grant.permissionId, 'perm-1');
  assert.equal(outcome.destAddr, '127.0.0.1');
  assert.equal(outcome.destination.authority, `localhost:${port}`);
  assert.deepEqual(outcome.attempt.trace, TRACE);
  // Every phase was timed, in order, for the decision-latency metric and the trace's child spans.
  const { policy, dns, dial } = outcome.attempt;
  assert.ok(policy && dns && dial);
  assert.ok(
    policy.start <= policy.end && policy.end <= dns.start && dns.end <= dial.start && dial.start <= dial.end,
  );
  // The allow is logged when the tunnel starts (open-tunnels), not here: nothing was refused.
  assert.deepEqual(h.logs, []);
});

test('denied by policy: 403, and the name is never looked up nor dialled', async () => {
  const h = harness(DENY);
  const outcome = await flow(h, 'secret-exfil-channel.example.com:443');
  assert.deepEqual(outcome, { kind: 'reject', status: 403 });
  assert.deepEqual(h.lookups, []);
  const denied = h.logs.find((l) => l['msg'] === 'CONNECT denied');
  assert.equal(denied?.['deny_reason'], 'no_matching_permission');
  assert.equal(denied?.['source_identity'], 'agent-a');
});

test('malformed authority: 400 before the policy is asked', async () => {
  const h = harness(ALLOW);
  for (const bad of ['', 'a:b:c', 'host:0', 'host name:443', 'host\r\nx:443']) {
    assert.deepEqual(await flow(h, bad), { kind: 'reject', status: 400 }, JSON.stringify(bad));
  }
  assert.deepEqual(h.decisions, []);
});

test('no or malformed identity: 403 with its own reason, no identity in the log, no policy query', async () => {
  const h = harness(ALLOW);
  assert.deepEqual(await flow(h, `127.0.0.1:${port}`, info(null, 'missing')), {
    kind: 'reject',
    status: 403,
  });
  assert.deepEqual(await flow(h, `127.0.0.1:${port}`, info(null, 'malformed')), {
    kind: 'reject',
    status: 403,
  });
  const reasons = h.logs.filter((l) => l['msg'] === 'CONNECT denied').map((l) => l['deny_reason']);
  assert.deepEqual(reasons, ['no_identity', 'malformed_identity']);
  assert.ok(h.logs.every((l) => !('source_identity' in l)));
  assert.deepEqual(h.decisions, []);
});

test('egress: a permitted name resolving to a refused address is a 403 (egress_refused), never dialled', async () => {
  const h = harness(ALLOW, { allow: [], answers: ['10.0.0.7'] });
  assert.deepEqual(await flow(h, 'internal.example.com:443'), { kind: 'reject', status: 403 });
  const denied = h.logs.find((l) => l['msg'] === 'CONNECT denied');
  assert.equal(denied?.['deny_reason'], 'egress_refused');
  assert.match(String(denied?.['deny_detail']), /10\.0\.0\.7/);
});

test('egress: one refused address in a mixed DNS answer refuses the CONNECT', async () => {
  const h = harness(ALLOW, { allow: ['127.0.0.0/8'], answers: ['127.0.0.1', '169.254.169.254'] });
  assert.deepEqual(await flow(h, 'rebind.example.com:443'), { kind: 'reject', status: 403 });
});

test('unreachable destination: 502 and a TCP connect failed line', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const closedPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const h = harness(ALLOW);
  assert.deepEqual(await flow(h, `127.0.0.1:${closedPort}`), { kind: 'reject', status: 502 });
  assert.ok(h.logs.some((l) => l['msg'] === 'TCP connect failed'));
});

test('a client gone during the decision gets nothing dialled, and the abandonment is logged', async () => {
  const h = harness(ALLOW);
  // Gone once the policy has been asked: the decision had begun.
  const outcome = await runConnectFlow(
    h.deps,
    request(`127.0.0.1:${port}`, info('agent-a'), {
      protocol: 'HTTP/1.1',
      cancelled: () => h.decisions.length > 0,
    }),
  );
  assert.deepEqual(outcome, { kind: 'cancelled' });
  assert.equal(h.decisions.length, 1);
  assert.deepEqual(h.lookups, []);
  await new Promise((r) => setImmediate(r));
  assert.equal(h.logs.find((l) => l['msg'] === 'CONNECT abandoned')?.['stage'], 'deciding');
});

test('a client gone before the decision began (a stream reset at once) costs no policy query', async () => {
  const h = harness(ALLOW);
  let gone = false;
  const pending = runConnectFlow(
    h.deps,
    request(`127.0.0.1:${port}`, info('agent-a'), { cancelled: () => gone }),
  );
  // The reset arrives in the same read as the request: handled before the flow's first turn ends.
  gone = true;
  assert.deepEqual(await pending, { kind: 'cancelled' });
  assert.deepEqual(h.decisions, [], 'no registry query');
  assert.deepEqual(h.lookups, []);
  await new Promise((r) => setImmediate(r));
  assert.equal(h.logs.find((l) => l['msg'] === 'CONNECT abandoned')?.['stage'], 'received');
});

test('the tunnel slot: freed by a refusal, handed over with a dialled tunnel, freed when it is abandoned', async () => {
  const h = harness(ALLOW);
  const limiter = new RateLimiter(
    rateLimitSettings(configSchema.shape.rate_limit.parse({ max_tunnels_per_identity: 1 })),
  );
  const deps = { ...h.deps, limiter };
  const closed = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  assert.deepEqual(await runConnectFlow(deps, request(`127.0.0.1:${closed}`)), {
    kind: 'reject',
    status: 502,
  });
  const dialled = await runConnectFlow(deps, request(`127.0.0.1:${port}`));
  assert.equal(dialled.kind, 'tunnel');
  assert.deepEqual(await runConnectFlow(deps, request(`127.0.0.1:${port}`)), { kind: 'reject', status: 429 });
  if (dialled.kind === 'tunnel') abandonTunnel(h.deps.events, dialled);
  const again = await runConnectFlow(deps, request(`127.0.0.1:${port}`));
  assert.equal(again.kind, 'tunnel');
  if (again.kind === 'tunnel') {
    assert.equal(dialled.kind === 'tunnel' && dialled.upstream.destroyed, true);
    abandonTunnel(h.deps.events, again);
  }
  limiter.stop();
});
