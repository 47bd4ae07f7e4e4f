import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The static (load-time) and dynamic imports of every file under src/, read from the source text, for
 * tests that check what an entry point loads at start (pkcs11-isolation, telemetry-isolation) and for the
 * folder dependencies docs/ARCHITECTURE.md states (architecture.test.ts).
 */
export const SRC = resolve(fileURLToPath(new URL('../../src', import.meta.url)));
// Value imports and re-exports evaluated at load time; `import type` is erased and does not count.
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;
// `import type` / `export type`: erased at run time, but still a dependency of the code's design.
const TYPE_IMPORT = /^\s*(?:import|export)\s+type\s+[^'";]*?\sfrom\s+['"]([^'"]+)['"]/gm;
// `typeof import('x')` is a type and does not load anything.
const DYNAMIC_IMPORT = /(?<!typeof\s)\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await sourceFiles(path)));
    else if (entry.name.endsWith('.ts')) out.push(path);
  }
  return out;
}

function target(from: string, specifier: string): string {
  return specifier.startsWith('.') ? resolve(dirname(from), specifier.replace(/\.js$/, '.ts')) : specifier;
}

export interface FileImports {
  /** Loaded with the file. */
  readonly static: string[];
  /** Loaded when the code runs `import(...)`. */
  readonly dynamic: string[];
  /** Type-only imports: nothing is loaded. */
  readonly types: string[];
}

export async function graph(): Promise<Map<string, FileImports>> {
  const edges = new Map<string, FileImports>();
  for (const file of await sourceFiles(SRC)) {
    const text = await readFile(file, 'utf8');
    edges.set(file, {
      static: [...text.matchAll(STATIC_IMPORT)].map((m) => target(file, m[1] ?? '')),
      dynamic: [...text.matchAll(DYNAMIC_IMPORT)].map((m) => target(file, m[1] ?? '')),
      types: [...text.matchAll(TYPE_IMPORT)].map((m) => target(file, m[1] ?? '')),
    });
  }
  return edges;
}

export function loadedAtStart(edges: Map<string, { static: string[] }>, entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const next of edges.get(file)?.static ?? []) visit(next);
  };
  visit(join(SRC, entry));
  return seen;
}
