import assert from 'node:assert/strict';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { graph, loadedAtStart, SRC } from '../helpers/import-graph.js';

/**
 * The dashboard stays out of the gateway: `serve` loads nothing of src/dashboard/ (the command's server,
 * its pages, its OTLP parser), and the event feed only by a dynamic import when the admin listener is on.
 */
test('the gateway loads no dashboard code, and the event feed only on demand', async () => {
  const edges = await graph();
  for (const entry of ['gateway/gateway.ts', 'cli/serve.ts']) {
    const loaded = [...loadedAtStart(edges, entry)].map((f) => relative(SRC, f));
    assert.deepEqual(
      loaded.filter((f) => f.startsWith('dashboard/') || f.startsWith('eventfeed/')),
      [],
      `${entry} loads dashboard or feed code at start`,
    );
    assert.ok(!loaded.includes('eventsource-parser') && !loaded.includes('preact'));
  }
  assert.ok(
    edges.get(join(SRC, 'gateway', 'admin-wiring.ts'))?.dynamic.includes(join(SRC, 'eventfeed', 'feed.ts')),
    'the admin wiring imports the feed dynamically (the reader sees imports)',
  );
  const command = loadedAtStart(edges, 'dashboard/command.ts');
  assert.ok(!command.has(join(SRC, 'dashboard', 'server.ts')), 'the command loads its server on use');
  assert.ok(loadedAtStart(edges, 'dashboard/server.ts').has(join(SRC, 'dashboard', 'hub.ts')));
});
