import type { Io } from './action.js';

/** Plain-text output: aligned tables for lists, `name: value` lines for single results. */

/** A list as pretty JSON (`--json`: the items as they are) or as an aligned table of `cells`. */
export function printList<T>(
  io: Io,
  json: boolean | undefined,
  items: readonly T[],
  headers: readonly string[],
  cells: (item: T) => string[],
): void {
  io.out(json === true ? `${JSON.stringify(items, null, 2)}\n` : formatTable(headers, items.map(cells)));
}

export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

export function formatFields(fields: Record<string, string | number | undefined>): string {
  const entries = Object.entries(fields).filter((e): e is [string, string | number] => e[1] !== undefined);
  const width = Math.max(...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}\n`).join('');
}

/** A short, still distinctive form of an SPKI fingerprint for tables (`sha256:` and 16 hex digits). */
export function shortFingerprint(fingerprint: string): string {
  return fingerprint.slice(0, 'sha256:'.length + 16);
}
