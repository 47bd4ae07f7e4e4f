/** @jsxRuntime automatic @jsxImportSource preact */
import { chartPaths } from '../chart.ts';
import { bytes, rate } from '../format.ts';
import type { IdentitySeries } from '../types.ts';

const W = 640;
const H = 140;
/** The chart spans the series' own age, at least a minute and at most five. */
const MIN_SPAN_MS = 60_000;
const MAX_SPAN_MS = 5 * 60_000;

/**
 * Each identity's rate over the last minutes against its limit (per gateway: buckets are per process
 * unless the gateways share budgets) and, where a gateway reports one, its quota.
 */
export function BandwidthView(props: { series: readonly IdentitySeries[]; now: number }) {
  const series = [...props.series].sort((a, b) => a.identity.localeCompare(b.identity));
  if (series.length === 0) return <p class="muted">No traffic in the last minutes.</p>;
  return (
    <section class="charts">
      {series.map((s) => {
        const upLimit = Math.max(0, ...s.limits.map((l) => l.upBytesPerSecond));
        const downLimit = Math.max(0, ...s.limits.map((l) => l.downBytesPerSecond));
        const first = s.points[0]?.t ?? props.now;
        const spanMs = Math.min(MAX_SPAN_MS, Math.max(MIN_SPAN_MS, props.now - first));
        const paths = chartPaths(s.points, upLimit, { width: W, height: H, end: props.now, spanMs });
        const last = s.points.at(-1);
        const quota = s.limits.find((l) => l.quota !== null)?.quota ?? null;
        return (
          <figure key={s.identity} data-testid="bandwidth" data-identity={s.identity}>
            <figcaption>
              <strong>{s.identity}</strong> now {rate(last?.up ?? 0)} up, {rate(last?.down ?? 0)} down · limit{' '}
              {upLimit > 0 ? `${rate(upLimit)} up per gateway` : 'none up'}
              {downLimit > 0 ? `, ${rate(downLimit)} down` : ''} · quota{' '}
              {quota === null
                ? 'none reported'
                : `${bytes(quota.usedBytes)} of ${bytes(quota.limitBytes)} per ${quota.windowS} s`}
            </figcaption>
            <svg viewBox={`0 0 ${W} ${H}`} class="chart" role="img" aria-label={`bandwidth of ${s.identity}`}>
              {paths.limitY !== undefined && (
                <line class="limit" x1={0} x2={W} y1={paths.limitY} y2={paths.limitY} />
              )}
              <path class="up" d={paths.up} />
              <path class="down" d={paths.down} />
              <text x={4} y={12} class="axis">
                {rate(paths.top)}
              </text>
              <text x={W - 4} y={12} class="axis right">
                last {Math.round(spanMs / 1000)} s
              </text>
            </svg>
          </figure>
        );
      })}
      <p class="muted legend">
        <span class="key up" /> upload <span class="key down" /> download <span class="key limit" /> upload
        limit
      </p>
    </section>
  );
}
