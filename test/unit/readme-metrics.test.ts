import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { GatewayMetrics } from '../../src/metrics/gateway-metrics.js';
import { SidecarMetrics } from '../../src/sidecar/metrics.js';

/**
 * Dashboards and alerts are written from the docs: every metric the gateway (README, "Metrics") and the
 * sidecar (docs/SIDECAR.md) expose must have a row, and every row must name a metric that exists.
 * prom-client's process metrics are documented as one row per prefix.
 */
async function rows(file: string, heading: string): Promise<Set<string>> {
  const text = await readFile(new URL(`../../${file}`, import.meta.url), 'utf8');
  const start = text.indexOf(`\n## ${heading}\n`);
  assert.ok(start >= 0, `${file} has a "## ${heading}" section`);
  const end = text.indexOf('\n## ', start + 1);
  const names = text
    .slice(start, end < 0 ? undefined : end)
    .split('\n')
    .filter((line) => line.startsWith('| `'))
    .flatMap((line) => [...(line.split(' | ')[0] ?? '').matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
  return new Set(names);
}

function exposed(registry: { getMetricsAsArray(): Array<{ name: string }> }, prefix: string): string[] {
  return registry
    .getMetricsAsArray()
    .map((m) => m.name)
    .filter((name) => !name.startsWith(`${prefix}process_`) && !name.startsWith(`${prefix}nodejs_`));
}

for (const [file, heading, prefix, registry] of [
  [
    'README.md',
    'Metrics',
    'agent_gateway_',
    new GatewayMetrics({ enabled: true, maxIdentities: 1 }).registry,
  ],
  [
    'docs/SIDECAR.md',
    'Metrics and traces',
    'agent_gateway_sidecar_',
    new SidecarMetrics({ traceSpans: () => undefined }).registry,
  ],
] as const) {
  test(`${file}: every ${prefix}* metric has a row, and every row is a metric`, async () => {
    const documented = await rows(file, heading);
    const names = exposed(registry, prefix);
    assert.deepEqual(
      names.filter((n) => !documented.has(n)),
      [],
      'undocumented metrics',
    );
    const stale = [...documented].filter((d) => !d.endsWith('_*') && !names.includes(d));
    assert.deepEqual(stale, [], 'rows naming no metric');
    assert.ok(documented.has(`${prefix}process_*`), 'the process metrics row');
  });
}
