import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/*
 * The gateway's process must never load the PKCS#11 binding (a native addon) or the token code: only the
 * commands and the sidecar that were given a pkcs11: URI do, through a dynamic import. This reads the
 * static (load-time) imports of src/ and checks what each entry point pulls in.
 */

const SRC = resolve(fileURLToPath(new URL('../../src', import.meta.url)));
// Value imports and re-exports evaluated at load time; `import type` is erased and does not count.
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm;
// `typeof import('x')` is a type and does not load anything.
const DYNAMIC_IMPORT = /(?<!typeof\s)\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
/** The token code that talks to pkcs11js; errors.ts, uri.ts and settings.ts are plain data and parsing. */
const TOKEN_CODE = [
  'module.ts',
  'token.ts',
  'objects.ts',
  'token-key.ts',
  'keygen.ts',
  'engine-tls-key.ts',
].map((f) => join(SRC, 'pkcs11', f));

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

async function graph(): Promise<Map<string, { static: string[]; dynamic: string[] }>> {
  const edges = new Map<string, { static: string[]; dynamic: string[] }>();
  for (const file of await sourceFiles(SRC)) {
    const text = await readFile(file, 'utf8');
    edges.set(file, {
      static: [...text.matchAll(STATIC_IMPORT)].map((m) => target(file, m[1] ?? '')),
      dynamic: [...text.matchAll(DYNAMIC_IMPORT)].map((m) => target(file, m[1] ?? '')),
    });
  }
  return edges;
}

function loadedAtStart(edges: Map<string, { static: string[] }>, entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const next of edges.get(file)?.static ?? []) visit(next);
  };
  visit(join(SRC, entry));
  return seen;
}

describe('PKCS#11 code stays off the gateway', () => {
  test('the import reader sees imports (a check that cannot fail would prove nothing)', async () => {
    const edges = await graph();
    assert.ok(
      loadedAtStart(edges, 'cli/program.ts').has(join(SRC, 'gateway', 'gateway.ts')),
      'the CLI loads the gateway at start',
    );
    assert.ok(
      loadedAtStart(edges, 'cli/program.ts').has(join(SRC, 'pkcs11', 'uri.ts')),
      'the CLI parses URIs without loading the token code',
    );
    assert.ok(
      edges
        .get(join(SRC, 'sidecar', 'tls-client-key.ts'))
        ?.dynamic.includes(join(SRC, 'pkcs11', 'engine-tls-key.ts')),
    );
  });

  test('neither the gateway nor the CLI at start loads pkcs11js or the token code', async () => {
    const edges = await graph();
    for (const entry of ['gateway/gateway.ts', 'cli/program.ts', 'cli/serve.ts']) {
      const loaded = loadedAtStart(edges, entry);
      assert.ok(!loaded.has('pkcs11js'), `${entry} loads pkcs11js at start`);
      const token = TOKEN_CODE.filter((f) => loaded.has(f)).map((f) => relative(SRC, f));
      assert.deepEqual(token, [], `${entry} loads token code at start`);
    }
    for (const entry of ['gateway/gateway.ts', 'cli/serve.ts']) {
      const pkcs11 = [...loadedAtStart(edges, entry)].filter((f) => f.startsWith(join(SRC, 'pkcs11')));
      assert.deepEqual(pkcs11, [], `${entry} loads nothing from pkcs11/`);
    }
  });

  test('pkcs11js is imported in one place, dynamically', async () => {
    const edges = await graph();
    const importers = [...edges]
      .flatMap(([file, e]) => [
        ...e.static.filter((t) => t === 'pkcs11js').map(() => `${relative(SRC, file)} (static)`),
        ...e.dynamic.filter((t) => t === 'pkcs11js').map(() => `${relative(SRC, file)} (dynamic)`),
      ])
      .sort();
    assert.deepEqual(importers, ['pkcs11/module.ts (dynamic)']);
  });
});
