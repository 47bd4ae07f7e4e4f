/** @jsxRuntime automatic @jsxImportSource preact */
import { clock } from '../format.ts';
import type { OperatorAction } from '../types.ts';

const show = (o: Readonly<Record<string, string | number>>) =>
  Object.entries(o)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

/** Every operator action: this dashboard's (logins, closes, revokes) and the gateways' own (CLI closes). */
export function AuditView(props: { audit: readonly OperatorAction[] }) {
  return (
    <section>
      <table data-testid="audit">
        <thead>
          <tr>
            <th>time</th>
            <th>where</th>
            <th>who</th>
            <th>role</th>
            <th>action</th>
            <th>target</th>
            <th>result</th>
          </tr>
        </thead>
        <tbody>
          {props.audit.map((a, i) => (
            <tr key={`${a.time}-${i}`} data-action={a.action}>
              <td>{clock(a.time)}</td>
              <td>{a.gateway}</td>
              <td>
                {a.operator_name ?? '—'} <span class="muted">{a.operator_addr}</span>
              </td>
              <td>{a.operator_role}</td>
              <td>{a.action}</td>
              <td>{show(a.target)}</td>
              <td>{show(a.result)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
