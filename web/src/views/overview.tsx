/** @jsxRuntime automatic @jsxImportSource preact */
import { clock } from '../format.ts';
import type { DashboardState } from '../store.ts';
import { layoutTopology } from '../topology.ts';
import { Status } from './common.tsx';

const W = 900;
const H = 380;

export function Overview(props: { state: DashboardState; now: number }) {
  const { state, now } = props;
  const recent = state.decisions.slice(0, 200);
  const topology = layoutTopology(
    recent,
    state.tunnels,
    state.gateways.map((g) => g.gateway),
    now,
  );
  const at = new Map(topology.nodes.map((n) => [n.id, n]));
  const lastMinute = state.decisions.filter((d) => now - Date.parse(d.time) <= 60_000);
  const allowed = lastMinute.filter((d) => d.result === 'allowed').length;
  return (
    <section>
      <div class="stats">
        <Stat label="open tunnels" value={state.tunnelsTotal} />
        <Stat label="allowed, last minute" value={allowed} />
        <Stat label="refused, last minute" value={lastMinute.length - allowed} />
        <Stat
          label="gateways live"
          value={`${state.gateways.filter((g) => g.connected).length}/${state.gateways.length}`}
        />
      </div>
      <h2>Topology</h2>
      <svg
        class="topology"
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-label="agents, gateways and destinations"
      >
        <text x={0.14 * W} y={16} class="column">
          agents
        </text>
        <text x={0.5 * W} y={16} class="column">
          gateways
        </text>
        <text x={0.86 * W} y={16} class="column">
          destinations
        </text>
        {topology.edges.map((e) => {
          const a = at.get(e.from);
          const b = at.get(e.to);
          if (a === undefined || b === undefined) return null;
          return (
            <line
              key={`${e.from}>${e.to}`}
              x1={a.x * W}
              y1={a.y * H}
              x2={b.x * W}
              y2={b.y * H}
              class={`edge ${e.lit ?? ''} ${e.open > 0 ? 'open' : ''}`}
              data-lit={e.lit ?? 'none'}
            />
          );
        })}
        {topology.nodes.map((n) => (
          <g key={n.id} class={`node ${n.kind}`} transform={`translate(${n.x * W},${n.y * H})`}>
            <circle r={7} />
            <text y={-12}>{n.label.length > 32 ? `${n.label.slice(0, 31)}…` : n.label}</text>
          </g>
        ))}
      </svg>
      <h2>Latest decisions</h2>
      <table>
        <tbody>
          {state.decisions.slice(0, 8).map((d, i) => (
            <tr key={`${d.time}-${i}`}>
              <td>{clock(d.time)}</td>
              <td>{d.source_identity ?? '—'}</td>
              <td>{d.dest_authority ?? '—'}</td>
              <td>
                <Status value={d.result} />
              </td>
              <td>{d.reason ?? ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function Stat(props: { label: string; value: number | string }) {
  return (
    <div class="stat">
      <span class="value">{props.value}</span>
      <span class="label">{props.label}</span>
    </div>
  );
}
