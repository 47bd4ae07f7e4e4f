import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDestination } from '../../src/destination/normalize.js';
import { LiveCheck, type LiveSessions } from '../../src/livecheck/live-check.js';
import type { RecheckResult, RecheckSubject } from '../../src/policy/decision.js';
import { GatewayEvents, type LiveCheckStatus } from '../../src/session/events.js';
import type { TunnelSession } from '../../src/session/tunnel-session.js';
import { FakeClock } from './ratelimit-fakes.js';

/**
 * The live check against a fake policy and a fake set of tunnels, on an injected clock: which tunnels a
 * re-check closes and with what cause, the grace when re-checks fail, the decision cache's gate, and
 * that notifications coalesce into few re-checks.
 */
function session(id: string, permissionId: string, openedAtMono = 0): TunnelSession {
  return {
    id,
    identity: `agent-${id}`,
    spki: Buffer.from(id),
    spkiFingerprint: '0'.repeat(64),
    destination: parseDestination('d.example:443'),
    destAddr: '127.0.0.1',
    protocol: 'HTTP/2',
    peerAddr: '127.0.0.1:1',
    trace: undefined,
    grant: {
      permissionId,
      signingKeyId: 'k',
      scopeId: '1',
      validUntilMono: 1e12,
      endsWith: 'permission',
      cached: false,
    },
    openedAt: 0,
    openedAtMono,
  };
}

class FakeTunnels implements LiveSessions {
  readonly open = new Map<string, TunnelSession>();
  readonly closed: Array<{ id: string; cause: string; reason: string }> = [];
  readonly validity: Array<{ id: string; until: number }> = [];
  add(s: TunnelSession): void {
    this.open.set(s.id, s);
  }
  sessions() {
    return this.open.values();
  }
  closeSessions(ids: Iterable<string>, cause: string, reason: string): number {
    let n = 0;
    for (const id of ids) {
      if (this.open.delete(id)) {
        this.closed.push({ id, cause, reason });
        n++;
      }
    }
    return n;
  }
  updateValidity(id: string, until: number): void {
    this.validity.push({ id, until });
  }
}

class FakePolicy {
  calls: RecheckSubject[][] = [];
  answer: (subjects: readonly RecheckSubject[]) => RecheckResult = (s) => ({
    ok: true,
    verdicts: s.map(() => ({ ok: true, validUntilMono: 1e12, endsWith: 'permission' as const })),
  });
  forgotten: string[] = [];
  invalidations = 0;
  gate: () => boolean = () => false;
  async recheck(subjects: readonly RecheckSubject[]): Promise<RecheckResult> {
    this.calls.push([...subjects]);
    return this.answer(subjects);
  }
  forgetPermissions(ids: Iterable<string>): void {
    this.forgotten.push(...ids);
  }
  invalidateCache(): void {
    this.invalidations++;
  }
  setCacheGate(gate: () => boolean): void {
    this.gate = gate;
  }
}

const flush = () => new Promise((r) => setImmediate(r));

function rig(opts: { graceMs?: number; listening?: boolean } = {}) {
  const clock = new FakeClock();
  const policy = new FakePolicy();
  const tunnels = new FakeTunnels();
  const statuses: LiveCheckStatus[] = [];
  const events = new GatewayEvents();
  events.subscribe({ liveCheckStatus: (s) => statuses.push(s) });
  const changes = { current: { listening: opts.listening ?? true, detail: 'listening' } };
  const check = new LiveCheck(
    { policy, tunnels, events, intervalMs: 500, graceMs: opts.graceMs ?? 30_000, clock },
    changes,
  );
  return { clock, policy, tunnels, statuses, check, changes };
}

describe('LiveCheck', () => {
  test('closes each tunnel whose verdict fails: revoked for most reasons, expired for an ended window', async () => {
    const r = rig();
    r.tunnels.add(session('a', 'p1'));
    r.tunnels.add(session('b', 'p2'));
    r.tunnels.add(session('c', 'p3'));
    r.policy.answer = (subjects) => ({
      ok: true,
      verdicts: subjects.map((s) =>
        s.permissionId === 'p1'
          ? { ok: false, reason: 'signer_revoked', detail: 'signing key "k" is revoked' }
          : s.permissionId === 'p2'
            ? { ok: false, reason: 'permission_expired', detail: 'permission "p2" has expired' }
            : { ok: true, validUntilMono: 777, endsWith: 'signer' as const },
      ),
    });
    await r.check.runOnce();
    assert.deepEqual(r.tunnels.closed, [
      { id: 'a', cause: 'revoked', reason: 'signer_revoked: signing key "k" is revoked' },
      { id: 'b', cause: 'expired', reason: 'permission_expired: permission "p2" has expired' },
    ]);
    assert.deepEqual(r.tunnels.validity, [{ id: 'c', until: 777 }]);
    assert.deepEqual(
      r.policy.forgotten.sort(),
      ['p1', 'p2'],
      'cached allows of failed permissions are dropped',
    );
    r.check.stop();
  });

  test('runs every interval, and at once (coalesced) on notifications', async () => {
    const r = rig();
    r.tunnels.add(session('a', 'p1'));
    r.check.start();
    r.clock.advance(500);
    await flush();
    assert.equal(r.policy.calls.length, 1);
    // A burst of notifications while idle: the cache is cleared each time, one re-check runs.
    for (let i = 0; i < 10; i++) r.check.changed();
    assert.equal(r.policy.invalidations, 10);
    r.clock.advance(20);
    await flush();
    assert.equal(r.policy.calls.length, 2);
    r.clock.advance(500);
    await flush();
    assert.equal(r.policy.calls.length, 3, 'and the periodic one goes on');
    r.check.stop();
  });

  test('with no tunnel open no query is made', async () => {
    const r = rig();
    await r.check.runOnce();
    assert.equal(r.policy.calls.length, 0);
  });

  test('failing re-checks: unhealthy once, tunnels kept for the grace, then closed as revalidation_failed', async () => {
    const r = rig({ graceMs: 2_000 });
    r.tunnels.add(session('a', 'p1', 0));
    await r.check.runOnce();
    r.policy.answer = () => ({ ok: false, error: 'connection refused' });
    r.clock.advance(1_000);
    await r.check.runOnce();
    await r.check.runOnce();
    assert.equal(r.tunnels.closed.length, 0, 'within the grace');
    assert.equal(r.check.healthy, false);
    assert.deepEqual(
      r.statuses.map((s) => [s.healthy, s.mode]),
      [[false, 'down']],
      'said once, not per re-check',
    );
    assert.equal(r.policy.gate(), false, 'no cached allow without a working re-check');
    // A tunnel admitted during the outage was verified at its admission: it gets its own grace.
    r.tunnels.add(session('b', 'p2', 1_500));
    r.clock.advance(1_000);
    await r.check.runOnce();
    assert.deepEqual(
      r.tunnels.closed.map((c) => [c.id, c.cause]),
      [['a', 'revalidation_failed']],
    );
    assert.match(r.tunnels.closed[0]!.reason, /policy\.revalidation_grace_s.*connection refused/);
    r.policy.answer = (s) => ({
      ok: true,
      verdicts: s.map(() => ({ ok: true, validUntilMono: 1e12, endsWith: 'permission' as const })),
    });
    await r.check.runOnce();
    assert.equal(r.check.healthy, true);
    assert.deepEqual(r.statuses.at(-1), {
      healthy: true,
      mode: 'listening',
      detail: 'registry changes are notified; re-checks succeed',
    });
  });

  test('a grace of 0 closes at the first failed re-check', async () => {
    const r = rig({ graceMs: 0 });
    r.tunnels.add(session('a', 'p1'));
    r.policy.answer = () => ({ ok: false, error: 'timeout' });
    await r.check.runOnce();
    assert.deepEqual(
      r.tunnels.closed.map((c) => c.cause),
      ['revalidation_failed'],
    );
  });

  test('the decision cache is usable only while notifications arrive and re-checks succeed', async () => {
    const r = rig();
    assert.equal(r.policy.gate(), true);
    r.changes.current = { listening: false, detail: 'the listener connection closed' };
    assert.equal(r.policy.gate(), false);
    r.check.down();
    assert.equal(r.statuses.at(-1)?.mode, 'polling');
    r.changes.current = { listening: true, detail: 'listening' };
    r.check.listening();
    assert.equal(r.policy.gate(), true);
    assert.ok(
      r.policy.invalidations >= 1,
      'a (re)connected listener clears the cache: notifications may have been lost',
    );
    r.check.stop();
  });
});
