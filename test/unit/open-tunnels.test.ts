import assert from 'node:assert/strict';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { parseDestination } from '../../src/destination/normalize.js';
import type { PolicyAllow } from '../../src/policy/decision.js';
import type { DialledTunnel } from '../../src/proxy/connect-flow.js';
import { OpenTunnels } from '../../src/proxy/open-tunnels.js';
import {
  type ConnectAttempt,
  GatewayEvents,
  type TunnelClosed,
  type TunnelOpened,
} from '../../src/session/events.js';
import { FakeClock } from './ratelimit-fakes.js';

/**
 * The set of open tunnels with an injected clock: its index by identity, permission and signing key,
 * closeWhere, and the one deadline per tunnel (the grant's window, server.max_tunnel_lifetime_s), on
 * real loopback sockets. No timing is asserted: the fake clock decides when deadlines pass.
 */
async function pair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const dialled = connect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  const result: [Socket, Socket] = [dialled, await accepted];
  server.close();
  for (const s of result) s.on('error', () => {});
  return result;
}

interface Harness {
  tunnels: OpenTunnels;
  clock: FakeClock;
  opened: TunnelOpened[];
  closed: TunnelClosed[];
  nextClose(): Promise<TunnelClosed>;
}

function harness(maxLifetimeMs = 0): Harness {
  const clock = new FakeClock();
  const events = new GatewayEvents();
  const opened: TunnelOpened[] = [];
  const closed: TunnelClosed[] = [];
  let waiting: ((e: TunnelClosed) => void) | undefined;
  events.subscribe({
    tunnelOpened: (e) => opened.push(e),
    tunnelClosed: (e) => {
      closed.push(e);
      waiting?.(e);
    },
  });
  const tunnels = new OpenTunnels({ events, idleTimeoutMs: 60_000, maxLifetimeMs, clock });
  return {
    tunnels,
    clock,
    opened,
    closed,
    nextClose: () => new Promise((resolve) => (waiting = resolve)),
  };
}

function attempt(identity: string): ConnectAttempt {
  return {
    protocol: 'HTTP/1.1',
    peerAddr: '127.0.0.1:1',
    identity,
    claimedIdentity: null,
    spki: Buffer.from('key'),
    spkiFingerprint: 'f'.repeat(64),
    rawAuthority: 'dest.example:443',
    trace: undefined,
    startedAt: 0,
    destination: parseDestination('dest.example:443'),
    grant: undefined,
    policy: undefined,
    dns: undefined,
    dial: undefined,
  };
}

async function open(
  h: Harness,
  identity: string,
  grant: Partial<PolicyAllow> = {},
): Promise<{ id: string; agent: Socket; destination: Socket }> {
  const [agent, clientSide] = await pair();
  const [destSide, destination] = await pair();
  const dialled: DialledTunnel = {
    kind: 'tunnel',
    attempt: attempt(identity),
    destination: parseDestination('dest.example:443'),
    upstream: destSide,
    destAddr: '127.0.0.1',
    grant: {
      allowed: true,
      permissionId: `perm-${identity}`,
      signingKeyId: 'key-a',
      scopeId: '1',
      validUntilMono: Number.POSITIVE_INFINITY,
      endsWith: 'permission',
      cached: false,
      ...grant,
    },
    reservation: undefined,
  };
  const session = h.tunnels.start(clientSide, dialled);
  return { id: session.id, agent, destination };
}

describe('OpenTunnels', () => {
  test('publishes the typed session on open, and indexes it by identity, permission and signing key', async () => {
    const h = harness();
    const a = await open(h, 'agent-a');
    const b = await open(h, 'agent-b', { signingKeyId: 'key-b' });
    assert.equal(h.opened.length, 2);
    assert.equal(h.opened[0]?.session.identity, 'agent-a');
    assert.equal(h.opened[0]?.session.grant.scopeId, '1');
    assert.deepEqual(
      h.tunnels.sessionsOf({ identity: 'agent-a' }).map((s) => s.id),
      [a.id],
    );
    assert.deepEqual(
      h.tunnels.sessionsOf({ permissionId: 'perm-agent-b' }).map((s) => s.id),
      [b.id],
    );
    assert.deepEqual(
      h.tunnels.sessionsOf({ signingKeyId: 'key-a' }).map((s) => s.id),
      [a.id],
    );
    assert.deepEqual(h.tunnels.sessionsOf({ identity: 'nobody' }), []);
    assert.equal(h.tunnels.list().length, 2);
    h.tunnels.closeAll('shutdown');
    await h.nextClose();
  });

  test('closeWhere closes exactly the matching tunnels, with the cause and reason given', async () => {
    const h = harness();
    const a = await open(h, 'agent-a');
    const b = await open(h, 'agent-b');
    const done = h.nextClose();
    assert.equal(
      h.tunnels.closeWhere((s) => s.identity === 'agent-a', 'operator', 'who asked'),
      1,
    );
    const e = await done;
    assert.equal(e.session.id, a.id);
    assert.equal(e.cause, 'operator');
    assert.equal(e.reason, 'who asked');
    assert.deepEqual(h.tunnels.sessionsOf({ identity: 'agent-a' }), [], 'gone from the index');
    assert.deepEqual(
      h.tunnels.sessionsOf({ identity: 'agent-b' }).map((s) => s.id),
      [b.id],
    );
    h.tunnels.closeAll('shutdown');
    await h.nextClose();
  });

  test("a tunnel closes when its grant's window ends: expired, with the window that ended", async () => {
    const h = harness();
    await open(h, 'agent-a', { validUntilMono: 5_000, endsWith: 'signer' });
    h.clock.advance(4_999);
    assert.equal(h.closed.length, 0);
    const done = h.nextClose();
    h.clock.advance(1);
    const e = await done;
    assert.equal(e.cause, 'expired');
    assert.equal(e.reason, 'signer_expired');
  });

  test('a re-check moves the deadline either way; a deadline beyond the longest timer is re-armed, not fired', async () => {
    const h = harness();
    const a = await open(h, 'agent-a', { validUntilMono: 1_000 });
    // Extended (the signer's window was renewed): not closed at the old end.
    h.tunnels.updateValidity(a.id, 2 ** 33, 'permission');
    h.clock.advance(2 ** 31);
    assert.equal(h.closed.length, 0, 'a timer firing early for a far deadline only re-arms');
    // Shortened (a window edited with SQL): closed at the new end.
    h.tunnels.updateValidity(a.id, h.clock.now() + 10, 'signer');
    const done = h.nextClose();
    h.clock.advance(10);
    assert.equal((await done).reason, 'signer_expired');
  });

  test('server.max_tunnel_lifetime_s closes a tunnel whose grant would last longer', async () => {
    const h = harness(60_000);
    await open(h, 'agent-a', { validUntilMono: 120_000 });
    const done = h.nextClose();
    h.clock.advance(60_000);
    const e = await done;
    assert.equal(e.cause, 'max_lifetime');
    assert.match(String(e.reason), /max_tunnel_lifetime_s \(60 s\)/);
  });

  test('a closed tunnel leaves no timer behind', async () => {
    const h = harness(60_000);
    await open(h, 'agent-a', { validUntilMono: 30_000 });
    const done = h.nextClose();
    h.tunnels.closeAll('shutdown');
    await done;
    assert.equal(h.clock.active(), 0);
  });
});
