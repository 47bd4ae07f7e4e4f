/** @jsxRuntime automatic @jsxImportSource preact */
import { useState } from 'preact/hooks';
import { clock } from '../format.ts';
import type { Decision } from '../types.ts';
import { Status } from './common.tsx';

export function DecisionsView(props: { decisions: readonly Decision[] }) {
  const [filter, setFilter] = useState('');
  const [result, setResult] = useState<'all' | Decision['result']>('all');
  const shown = props.decisions
    .filter((d) => result === 'all' || d.result === result)
    .filter(
      (d) =>
        filter === '' ||
        `${d.source_identity ?? ''} ${d.dest_authority ?? ''} ${d.reason ?? ''} ${d.gateway}`.includes(
          filter,
        ),
    )
    .slice(0, 500);
  return (
    <section>
      <div class="toolbar">
        <input
          placeholder="filter: identity, destination, reason, gateway"
          value={filter}
          onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
        />
        <select
          value={result}
          onChange={(e) => setResult((e.target as HTMLSelectElement).value as typeof result)}
        >
          <option value="all">all</option>
          <option value="allowed">allowed</option>
          <option value="denied">denied</option>
          <option value="failed">failed</option>
        </select>
        <span class="muted">
          {shown.length} of {props.decisions.length} kept in this page
        </span>
      </div>
      <table data-testid="decisions">
        <thead>
          <tr>
            <th>time</th>
            <th>gateway</th>
            <th>agent</th>
            <th>destination</th>
            <th>decision</th>
            <th>reason</th>
            <th>permission</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((d, i) => (
            <tr key={`${d.time}-${i}`} data-identity={d.source_identity ?? ''} data-result={d.result}>
              <td>{clock(d.time)}</td>
              <td>{d.gateway}</td>
              <td>{d.source_identity ?? '—'}</td>
              <td>{d.dest_authority ?? '—'}</td>
              <td>
                <Status value={d.result} /> {d.status}
              </td>
              <td title={d.detail ?? ''}>{d.reason ?? ''}</td>
              <td>{d.permission_id ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
