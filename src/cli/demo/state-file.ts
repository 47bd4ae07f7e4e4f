import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Ports remembered between runs, so the printed commands stay the same from one run to the next. */
export interface DemoPorts {
  gatewayPort?: number;
  targetPort?: number;
  dashboardPort?: number;
}

const FILE = 'ports.json';

export async function readDemoPorts(stateDir: string): Promise<DemoPorts> {
  try {
    const parsed = JSON.parse(await readFile(join(stateDir, FILE), 'utf8')) as Record<string, unknown>;
    return {
      gatewayPort: port(parsed['gatewayPort']),
      targetPort: port(parsed['targetPort']),
      dashboardPort: port(parsed['dashboardPort']),
    };
  } catch {
    // First run, or a file edited by hand into something else: choose new ports.
    return {};
  }
}

export async function writeDemoPorts(stateDir: string, ports: Required<DemoPorts>): Promise<void> {
  await writeFile(join(stateDir, FILE), `${JSON.stringify(ports, null, 2)}\n`);
}

function port(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 && value < 65536
    ? value
    : undefined;
}
