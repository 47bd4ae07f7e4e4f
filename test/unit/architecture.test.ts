import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { graph, SRC } from '../helpers/import-graph.js';

/*
 * docs/ARCHITECTURE.md's folder table states, for every folder of src/, which folders its files import.
 * A reader trusts that column to know what a change may touch, so it is checked against the imports
 * (static, dynamic and type-only alike) in both directions, and the folders must not form a cycle:
 * the rows are in dependency order, each folder importing only folders above it.
 */
const DOC = fileURLToPath(new URL('../../docs/ARCHITECTURE.md', import.meta.url));

/** `proxy/` for src/proxy/…, `version.ts` for a file at the root of src/. */
function unitOf(file: string): string {
  const rel = relative(SRC, file).split(sep);
  return rel.length === 1 ? (rel[0] ?? '') : `${rel[0]}/`;
}

async function unitsOfSrc(): Promise<Set<string>> {
  const entries = await readdir(SRC, { withFileTypes: true });
  return new Set(
    entries
      .filter((e) => e.isDirectory() || e.name.endsWith('.ts'))
      .map((e) => (e.isDirectory() ? `${e.name}/` : e.name)),
  );
}

/** Folder → the folders its files import, from the source. */
async function importedUnits(): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>();
  for (const [file, imports] of await graph()) {
    const from = unitOf(file);
    const set = out.get(from) ?? new Set<string>();
    out.set(from, set);
    for (const target of [...imports.static, ...imports.dynamic, ...imports.types]) {
      if (!target.startsWith(SRC)) continue; // a package
      const to = unitOf(target);
      if (to !== from) set.add(to);
    }
  }
  return out;
}

interface DocRow {
  readonly unit: string;
  readonly dependsOn: Set<string>;
}

/**
 * The table's rows, in order. In the third column, a backticked `name/` or `name/file` names the folder
 * `name/`, and a backticked root file (`version.ts`) names itself; other backticked words (file names in
 * parentheses) explain and are not read.
 */
function docRows(text: string, units: Set<string>): DocRow[] {
  const section = text.slice(text.indexOf('## Folders (`src/`)'), text.indexOf('## One CONNECT'));
  const rows: DocRow[] = [];
  for (const line of section.split('\n')) {
    const cells = line.split(' | ');
    const unit = /^\| `([^`]+)`$/.exec(cells[0] ?? '')?.[1];
    if (unit === undefined || cells.length < 3) continue;
    const dependsOn = new Set<string>();
    for (const [, token] of cells
      .slice(2)
      .join(' | ')
      .matchAll(/`([^`]+)`/g)) {
      const t = token ?? '';
      const folder = t.includes('/') ? `${t.slice(0, t.indexOf('/'))}/` : t;
      if (units.has(folder)) dependsOn.add(folder);
      else
        assert.ok(
          !t.endsWith('/'),
          `ARCHITECTURE.md: \`${unit}\` names \`${t}\`, which is not a folder of src/`,
        );
    }
    rows.push({ unit, dependsOn });
  }
  return rows;
}

describe('docs/ARCHITECTURE.md states the folder dependencies the imports have', async () => {
  const units = await unitsOfSrc();
  const imported = await importedUnits();
  const rows = docRows(await readFile(DOC, 'utf8'), units);

  test('the reader sees the table and the imports (a check that cannot fail proves nothing)', () => {
    assert.ok(rows.length >= 20, `only ${rows.length} rows read`);
    assert.ok(imported.get('gateway/')?.has('proxy/'), 'gateway/ imports proxy/');
    assert.ok(imported.get('ratelimit/')?.has('config/'), 'type-only imports count (ratelimit/ → config/)');
    assert.ok(rows.find((r) => r.unit === 'proxy/')?.dependsOn.has('policy/'));
  });

  test('every folder of src/ has exactly one row', () => {
    const named = rows.map((r) => r.unit);
    assert.deepEqual([...new Set(named)].sort(), named.slice().sort(), 'a folder has two rows');
    assert.deepEqual(named.slice().sort(), [...units].sort());
  });

  test("each row's dependencies are exactly what its files import", () => {
    for (const row of rows) {
      const actual = [...(imported.get(row.unit) ?? [])].sort();
      assert.deepEqual(
        [...row.dependsOn].sort(),
        actual,
        `row \`${row.unit}\` (left: the document, right: the imports)`,
      );
    }
  });

  test('the rows are in dependency order, so the folders form no cycle', () => {
    const position = new Map(rows.map((r, i) => [r.unit, i]));
    for (const [from, targets] of imported) {
      for (const to of targets) {
        assert.ok(
          (position.get(to) ?? Number.POSITIVE_INFINITY) < (position.get(from) ?? -1),
          `${from} imports ${to}, which is not in a row above it`,
        );
      }
    }
  });
});
