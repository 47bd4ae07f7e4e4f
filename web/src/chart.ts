import type { RatePoint } from './types.ts';

export interface ChartGeometry {
  readonly width: number;
  readonly height: number;
  /** Wall-clock ms at the right edge, and how much time the chart spans. */
  readonly end: number;
  readonly spanMs: number;
}

export interface ChartPaths {
  readonly up: string;
  readonly down: string;
  /** The y of the limit line, when there is a limit. */
  readonly limitY: number | undefined;
  /** The rate at the top of the chart. */
  readonly top: number;
}

/**
 * SVG path data for one identity's upload and download rates over time, with headroom above the larger
 * of the highest point and the limit, so the limit line is always in view. Hand-written: it is two
 * polylines and a line, smaller than any chart library's setup.
 */
export function chartPaths(points: readonly RatePoint[], limit: number, g: ChartGeometry): ChartPaths {
  const highest = points.reduce((m, p) => Math.max(m, p.up, p.down), 0);
  const top = Math.max(1024, highest, limit) * 1.15;
  const x = (t: number) => g.width - ((g.end - t) / g.spanMs) * g.width;
  const y = (v: number) => g.height - (v / top) * g.height;
  const line = (pick: (p: RatePoint) => number) =>
    points
      .filter((p) => g.end - p.t <= g.spanMs)
      .map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(pick(p)).toFixed(1)}`)
      .join(' ');
  return { up: line((p) => p.up), down: line((p) => p.down), limitY: limit > 0 ? y(limit) : undefined, top };
}
