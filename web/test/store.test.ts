import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initialState, MAX_DECISIONS, reduce } from '../src/store.ts';
import type { Decision, OperatorAction } from '../src/types.ts';

const decision = (n: number, result: Decision['result'] = 'allowed'): Decision => ({
  type: 'decision',
  gateway: 'gw',
  time: new Date(1_700_000_000_000 + n).toISOString(),
  result,
  status: result === 'allowed' ? 200 : 403,
  source_identity: `agent-${n}`,
  dest_authority: 'x:443',
  reason: null,
  detail: null,
  protocol: 'HTTP/2',
  source_peer_addr: '127.0.0.1:1',
  tunnel_id: null,
  permission_id: null,
  signing_key_id: null,
});

test('the first state replaces everything; records then arrive newest first, bounded', () => {
  let s = reduce(initialState, {
    event: 'state',
    data: {
      gateways: [{ gateway: 'gw', connected: true }],
      tunnels: [],
      tunnels_total: 3,
      bandwidth: [],
      audit: [],
    },
  });
  assert.equal(s.connected, true);
  assert.equal(s.tunnelsTotal, 3);
  for (let i = 0; i < MAX_DECISIONS + 10; i++) s = reduce(s, { event: 'record', data: decision(i) });
  assert.equal(s.decisions.length, MAX_DECISIONS);
  assert.equal(s.decisions[0]?.source_identity, `agent-${MAX_DECISIONS + 9}`);
  // A reconnect's state starts over (its history follows as records).
  s = reduce(s, { event: 'state', data: {} });
  assert.equal(s.decisions.length, 0);
});

test('audit records carried by state are not added twice when history replays them', () => {
  const action: OperatorAction = {
    type: 'operator_action',
    gateway: 'dashboard',
    time: '2026-01-01T00:00:00.000Z',
    action: 'revoke',
    operator_role: 'admin',
    operator_addr: '127.0.0.1:1',
    operator_name: 'alice',
    target: { kind: 'permission', id: 'p' },
    result: { result: 'revoked' },
  };
  let s = reduce(initialState, { event: 'state', data: { audit: [action] } });
  s = reduce(s, { event: 'record', data: action });
  assert.equal(s.audit.length, 1);
  s = reduce(s, { event: 'record', data: { ...action, time: '2026-01-01T00:00:01.000Z' } });
  assert.equal(s.audit.length, 2);
  assert.equal(s.audit[0]?.time, '2026-01-01T00:00:01.000Z');
});

test('samples extend each identity’s series; limits and gateway states replace theirs', () => {
  let s = reduce(initialState, {
    event: 'sample',
    data: { t: 1, points: [{ identity: 'a', point: { t: 1, up: 5, down: 6 } }] },
  });
  s = reduce(s, {
    event: 'sample',
    data: { t: 2, points: [{ identity: 'a', point: { t: 2, up: 7, down: 8 } }] },
  });
  assert.deepEqual(
    s.bandwidth[0]?.points.map((p) => p.t),
    [1, 2],
  );
  s = reduce(s, {
    event: 'limits',
    data: [
      {
        identity: 'a',
        limits: [{ gateway: 'gw', upBytesPerSecond: 100, downBytesPerSecond: 0, quota: null }],
      },
    ],
  });
  assert.equal(s.bandwidth[0]?.limits[0]?.upBytesPerSecond, 100);
  s = reduce(s, {
    event: 'gateway',
    data: { gateway: 'b', connected: false, detail: 'down', ready: false, checks: [] },
  });
  s = reduce(s, {
    event: 'gateway',
    data: { gateway: 'a', connected: true, detail: 'ok', ready: true, checks: [] },
  });
  s = reduce(s, {
    event: 'gateway',
    data: { gateway: 'b', connected: true, detail: 'ok', ready: true, checks: [] },
  });
  assert.deepEqual(
    s.gateways.map((g) => [g.gateway, g.connected]),
    [
      ['a', true],
      ['b', true],
    ],
  );
  s = reduce(s, { event: 'dropped', data: { dropped: 4 } });
  assert.equal(s.dropped, 4);
});
