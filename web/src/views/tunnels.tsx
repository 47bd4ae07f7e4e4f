/** @jsxRuntime automatic @jsxImportSource preact */
import { useState } from 'preact/hooks';
import { act } from '../api.ts';
import { age, bytes, rate } from '../format.ts';
import type { DashboardState } from '../store.ts';
import type { Session, Tunnel } from '../types.ts';
import { ConfirmButton, Notice, READ_ONLY } from './common.tsx';

interface CloseAnswer {
  closed: number;
  errors: string[];
}

export function TunnelsView(props: { state: DashboardState; session: Session | undefined; canAct: boolean }) {
  const { state, session } = props;
  const [notice, setNotice] = useState<string | undefined>();
  const byIdentity = new Map<string, Tunnel[]>();
  for (const t of state.tunnels)
    byIdentity.set(t.source_identity, [...(byIdentity.get(t.source_identity) ?? []), t]);
  const disabled = props.canAct ? undefined : READ_ONLY;

  const close = async (body: Record<string, string>, what: string) => {
    if (session === undefined) return;
    try {
      const answer = await act<CloseAnswer>(session, '/api/tunnels/close', body);
      setNotice(
        `${what}: ${answer.closed} closed${answer.errors.length > 0 ? `; ${answer.errors.join('; ')}` : ''}`,
      );
    } catch (e) {
      setNotice(`${what}: ${(e as Error).message}`);
    }
  };

  return (
    <section>
      <p class="muted">
        {state.tunnelsTotal} open tunnel{state.tunnelsTotal === 1 ? '' : 's'} on {state.gateways.length}{' '}
        gateway
        {state.gateways.length === 1 ? '' : 's'}
        {state.tunnelsTotal > state.tunnels.length ? ` (the ${state.tunnels.length} busiest shown)` : ''}.
        Closing revokes nothing: a valid permission may reconnect.
      </p>
      <Notice text={notice} />
      {[...byIdentity.entries()]
        .sort((a, b) => a[0].localeCompare(b[0]))
        .map(([identity, tunnels]) => (
          <div class="group" key={identity} data-testid="identity-group" data-identity={identity}>
            <div class="group-head">
              <h3>{identity}</h3>
              <span class="muted">
                {tunnels.length} tunnel{tunnels.length === 1 ? '' : 's'} ·{' '}
                {rate(tunnels.reduce((s, t) => s + t.up_bytes_per_second, 0))} up ·{' '}
                {rate(tunnels.reduce((s, t) => s + t.down_bytes_per_second, 0))} down
              </span>
              <ConfirmButton
                label="close all"
                confirm={`close all ${tunnels.length}?`}
                testId="close-all"
                disabled={disabled}
                onConfirm={() => close({ identity }, `close all of ${identity}`)}
              />
            </div>
            <table data-testid="tunnels">
              <thead>
                <tr>
                  <th>gateway</th>
                  <th>destination</th>
                  <th>protocol</th>
                  <th>age</th>
                  <th>up</th>
                  <th>down</th>
                  <th>rate up / down</th>
                  <th>permission</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {tunnels.map((t) => (
                  <tr
                    key={`${t.gateway}/${t.tunnel_id}`}
                    data-tunnel={t.tunnel_id}
                    data-permission={t.permission_id}
                  >
                    <td>{t.gateway}</td>
                    <td>{t.dest_authority}</td>
                    <td>{t.protocol}</td>
                    <td>{age(t.age_ms)}</td>
                    <td data-testid="bytes-up" data-bytes={t.bytes_client_to_dest}>
                      {bytes(t.bytes_client_to_dest)}
                    </td>
                    <td data-testid="bytes-down" data-bytes={t.bytes_dest_to_client}>
                      {bytes(t.bytes_dest_to_client)}
                    </td>
                    <td>
                      {rate(t.up_bytes_per_second)} / {rate(t.down_bytes_per_second)}
                      {t.throttled ? ' (held by a limit)' : ''}
                    </td>
                    <td>{t.permission_id}</td>
                    <td>
                      <button
                        type="button"
                        class="danger"
                        data-testid="close-tunnel"
                        disabled={disabled !== undefined}
                        title={disabled}
                        onClick={() =>
                          close({ gateway: t.gateway, tunnel_id: t.tunnel_id }, `close ${t.tunnel_id}`)
                        }
                      >
                        close
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ))}
      <h2>Recently closed</h2>
      <table data-testid="closed">
        <tbody>
          {state.closes.slice(0, 20).map((c) => (
            <tr key={`${c.gateway}/${c.tunnel_id}`} data-tunnel={c.tunnel_id} data-cause={c.close_cause}>
              <td>{c.source_identity}</td>
              <td>{c.dest_authority}</td>
              <td>{c.close_cause}</td>
              <td>{c.close_reason ?? ''}</td>
              <td>
                {bytes(c.bytes_client_to_dest)} up / {bytes(c.bytes_dest_to_client)} down
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
