/** @jsxRuntime automatic @jsxImportSource preact */
import { useState } from 'preact/hooks';
import { act } from '../api.ts';
import { short } from '../format.ts';
import type { RegistryView, Session, Tunnel } from '../types.ts';
import { ConfirmButton, Notice, READ_ONLY, Status } from './common.tsx';

interface RevokeAnswer {
  revoked: boolean;
  already_revoked_at?: string;
}

/**
 * Who authorized what: each principal (signing key) with its delegations and the permissions it signed,
 * each with its status as `permission list` judges it and the tunnels it backs now; then the agents.
 * Revoking writes revoked_at (nothing is signed, no principal key is needed); the gateways' live
 * authorization closes the tunnels it backed.
 */
export function RegistryPanel(props: {
  registry: RegistryView | undefined;
  error: string | undefined;
  tunnels: readonly Tunnel[];
  session: Session | undefined;
  canAct: boolean;
  reload: () => void;
}) {
  const [notice, setNotice] = useState<string | undefined>();
  const { registry, session } = props;
  if (registry === undefined) return <p class="muted">{props.error ?? 'Reading the registry…'}</p>;
  const disabled = props.canAct ? undefined : READ_ONLY;
  const noFunctions =
    registry.extension_version < 2
      ? 'the registry lacks extension version 2: run agent-gateway migrate'
      : undefined;
  const revoke = async (kind: string, id: string) => {
    if (session === undefined) return;
    try {
      const a = await act<RevokeAnswer>(session, '/api/revoke', { kind, id });
      setNotice(
        a.revoked ? `revoked ${kind} ${id}` : `${kind} ${id} was already revoked at ${a.already_revoked_at}`,
      );
    } catch (e) {
      setNotice(`revoke ${kind} ${id}: ${(e as Error).message}`);
    }
    props.reload();
  };
  const open = (pred: (t: Tunnel) => boolean) => props.tunnels.filter(pred).length;

  return (
    <section>
      {props.error !== undefined && <p class="warning">{props.error}</p>}
      <Notice text={notice} />
      <h2>Principals, their delegations and the permissions they signed</h2>
      {registry.principals.map((k) => {
        const scopes = registry.scopes.filter((s) => s.signing_key_id === k.key_id);
        const permissions = registry.permissions.filter((p) => p.signing_key_id === k.key_id);
        return (
          <div class="group" key={k.key_id} data-testid="principal" data-key={k.key_id}>
            <div class="group-head">
              <h3>{k.key_id}</h3>
              <Status value={k.status} />
              <span class="muted">
                key {short(k.spki_sha256)} · until {k.not_after}
                {k.revoked_at !== null ? ` · revoked ${k.revoked_at}` : ''} ·{' '}
                {open((t) => t.signing_key_id === k.key_id)} open tunnels
              </span>
              {k.revoked_at === null && (
                <ConfirmButton
                  label="revoke signer"
                  confirm={`revoke ${k.key_id} and all it signed?`}
                  testId="revoke-signer"
                  disabled={disabled ?? noFunctions}
                  onConfirm={() => revoke('signing_key', k.key_id)}
                />
              )}
            </div>
            <p class="muted">
              delegated:{' '}
              {scopes.length === 0
                ? 'nothing'
                : scopes.map((s) => (
                    <span key={s.id} class="scope">
                      {s.destination} <Status value={s.status} />{' '}
                    </span>
                  ))}
            </p>
            <table data-testid="permissions">
              <thead>
                <tr>
                  <th>permission</th>
                  <th>agent</th>
                  <th>key</th>
                  <th>destination</th>
                  <th>status</th>
                  <th>until</th>
                  <th>open</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {permissions.map((p) => (
                  <tr key={p.permission_id} data-permission={p.permission_id} data-status={p.status}>
                    <td>{p.permission_id}</td>
                    <td>{p.identity}</td>
                    <td>{short(p.spki_sha256)}</td>
                    <td>{p.destination}</td>
                    <td title={p.detail ?? ''}>
                      <Status value={p.status} />
                    </td>
                    <td>{p.not_after}</td>
                    <td>{open((t) => t.permission_id === p.permission_id)}</td>
                    <td>
                      {p.revoked_at === null && (
                        <ConfirmButton
                          label="revoke"
                          confirm="confirm revoke"
                          testId="revoke-permission"
                          disabled={disabled ?? noFunctions}
                          onConfirm={() => revoke('permission', p.permission_id)}
                        />
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        );
      })}
      <h2>Agents</h2>
      <table data-testid="agents">
        <thead>
          <tr>
            <th>identity</th>
            <th>key (SPKI SHA-256)</th>
            <th>permissions</th>
            <th>open tunnels</th>
          </tr>
        </thead>
        <tbody>
          {registry.agents.map((a) => (
            <tr key={`${a.identity}/${a.spki_sha256}`}>
              <td>{a.identity}</td>
              <td>{short(a.spki_sha256)}</td>
              <td>{a.permissions.join(', ')}</td>
              <td>{open((t) => t.source_identity === a.identity)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {registry.permissions_total > registry.permissions.length && (
        <p class="muted">
          {registry.permissions.length} of {registry.permissions_total} permissions shown; `permission list`
          has all.
        </p>
      )}
    </section>
  );
}
