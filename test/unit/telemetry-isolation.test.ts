import assert from 'node:assert/strict';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import { graph, loadedAtStart, SRC } from '../helpers/import-graph.js';

/*
 * A gateway (or sidecar) without an OTLP endpoint pays nothing for tracing, and one without an admin
 * listener nothing for metrics: OpenTelemetry and prom-client are reached only through dynamic imports
 * made when they are configured. This reads the static imports of src/ and checks each entry point.
 */
const isTelemetryPackage = (file: string) => file.startsWith('@opentelemetry/') || file === 'prom-client';

describe('OpenTelemetry and prom-client are loaded only when configured', () => {
  test('the import reader sees the dynamic imports it relies on (a check that cannot fail proves nothing)', async () => {
    const edges = await graph();
    const dynamic = (file: string) => edges.get(join(SRC, file))?.dynamic ?? [];
    assert.ok(dynamic('gateway/telemetry-wiring.ts').includes(join(SRC, 'tracing', 'load.ts')));
    assert.ok(dynamic('gateway/telemetry-wiring.ts').includes(join(SRC, 'metrics', 'gateway-metrics.ts')));
    assert.ok(dynamic('tracing/load.ts').includes(join(SRC, 'tracing', 'pipeline.ts')));
    assert.ok(dynamic('sidecar/telemetry.ts').includes(join(SRC, 'sidecar', 'metrics.ts')));
    assert.ok(
      loadedAtStart(edges, 'tracing/pipeline.ts').has('@opentelemetry/sdk-trace'),
      'the pipeline itself loads the SDK',
    );
    assert.ok(loadedAtStart(edges, 'metrics/gateway-metrics.ts').has('prom-client'));
  });

  test('neither the CLI, the gateway nor the sidecar loads them at start', async () => {
    const edges = await graph();
    for (const entry of ['cli/main.ts', 'cli/program.ts', 'gateway/gateway.ts', 'sidecar/sidecar.ts']) {
      const loaded = [...loadedAtStart(edges, entry)];
      assert.deepEqual(loaded.filter(isTelemetryPackage), [], `${entry} loads telemetry packages at start`);
      const ours = loaded
        .filter((f) => f.startsWith(join(SRC, 'metrics')) || f.startsWith(join(SRC, 'tracing')))
        .map((f) => relative(SRC, f))
        .filter((f) => f !== join('tracing', 'settings.ts'));
      assert.deepEqual(
        ours,
        [],
        `${entry} loads metrics/ or tracing/ code at start (settings.ts is plain parsing)`,
      );
    }
  });
});
