/** @jsxRuntime automatic @jsxImportSource preact */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderToString } from 'preact-render-to-string';
import { initialState } from '../src/store.ts';
import type { RegistryView, Tunnel } from '../src/types.ts';
import { RegistryPanel } from '../src/views/registry.tsx';
import { TunnelsView } from '../src/views/tunnels.tsx';

const tunnel: Tunnel = {
  gateway: 'gw-1',
  tunnel_id: 't-1',
  source_identity: 'agent-a',
  dest_authority: 'x:443',
  protocol: 'HTTP/2',
  permission_id: 'perm-1',
  signing_key_id: 'org-a',
  opened_at: '2026-01-01T00:00:00.000Z',
  age_ms: 5000,
  bytes_client_to_dest: 2048,
  bytes_dest_to_client: 1,
  up_bytes_per_second: 1024,
  down_bytes_per_second: 0,
  throttled: false,
};
const registry: RegistryView = {
  extension_version: 2,
  principals: [
    {
      key_id: 'org-a',
      algorithm: 'ecdsa_p256_sha256',
      created_at: '',
      status: 'active',
      spki_sha256: 'sha256:ab',
      not_before: '',
      not_after: '',
      revoked_at: null,
    },
  ],
  scopes: [
    {
      id: '1',
      signing_key_id: 'org-a',
      destination: 'x:443',
      status: 'active',
      not_before: '',
      not_after: '',
      revoked_at: null,
    },
  ],
  permissions: [
    {
      permission_id: 'perm-1',
      status: 'active',
      identity: 'agent-a',
      spki_sha256: 'sha256:cd',
      destination: 'x:443',
      signing_key_id: 'org-a',
      not_before: null,
      not_after: null,
      revoked_at: null,
      deny_reason: null,
      detail: null,
      problem: null,
    },
  ],
  permissions_total: 1,
  agents: [{ identity: 'agent-a', spki_sha256: 'sha256:cd', permissions: ['perm-1'] }],
};
const state = { ...initialState, tunnels: [tunnel], tunnelsTotal: 1 };
const session = { role: 'read' as const, name: 'bob', csrf: 'c' };
const buttons = (html: string) => [...html.matchAll(/<button[^>]*data-testid="([^"]+)"[^>]*>/g)];

test('tunnels: one row per tunnel with its bytes; a read-only login gets disabled controls', () => {
  const readOnly = renderToString(<TunnelsView state={state} session={session} canAct={false} />);
  assert.match(readOnly, /data-bytes="2048"/);
  assert.match(readOnly, /2\.0 KiB/);
  const controls = buttons(readOnly);
  assert.deepEqual(
    controls.map((m) => m[1]),
    ['close-all', 'close-tunnel'],
  );
  for (const m of controls) assert.match(m[0], /disabled/);
  const admin = renderToString(
    <TunnelsView state={state} session={{ ...session, role: 'admin' }} canAct={true} />,
  );
  for (const m of buttons(admin)) assert.doesNotMatch(m[0], /disabled/);
});

test('registry: permissions under their signer with status and open tunnels; revoke disabled when read-only or without extension 2', () => {
  const props = { error: undefined, tunnels: [tunnel], session, reload: () => {} };
  const readOnly = renderToString(<RegistryPanel {...props} registry={registry} canAct={false} />);
  assert.match(readOnly, /data-permission="perm-1" data-status="active"/);
  for (const m of buttons(readOnly)) assert.match(m[0], /disabled/);
  const admin = renderToString(<RegistryPanel {...props} registry={registry} canAct={true} />);
  for (const m of buttons(admin)) assert.doesNotMatch(m[0], /disabled/);
  const old = renderToString(
    <RegistryPanel {...props} registry={{ ...registry, extension_version: 1 }} canAct={true} />,
  );
  for (const m of buttons(old)) assert.match(m[0], /disabled/);
});
