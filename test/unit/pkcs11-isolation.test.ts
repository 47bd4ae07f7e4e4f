import assert from 'node:assert/strict';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { graph, loadedAtStart, SRC } from '../helpers/import-graph.js';

/*
 * The gateway's process must never load the PKCS#11 binding (a native addon) or the token code: only the
 * commands and the sidecar that were given a pkcs11: URI do, through a dynamic import. This reads the
 * static (load-time) imports of src/ and checks what each entry point pulls in.
 */

/** The token code that talks to pkcs11js; errors.ts, uri.ts and settings.ts are plain data and parsing. */
const TOKEN_CODE = [
  'module.ts',
  'token.ts',
  'objects.ts',
  'token-key.ts',
  'keygen.ts',
  'engine-tls-key.ts',
].map((f) => join(SRC, 'pkcs11', f));

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
