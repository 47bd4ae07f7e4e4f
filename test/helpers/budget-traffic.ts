import { readFileSync } from 'node:fs';
import type { AgentEndpoint } from '../../src/exfil/clients.js';
import { STRATEGIES, StrategyRun } from '../../src/exfil/strategies.js';
import type { TestAgent } from './pki.js';

/** How an agent reaches a gateway on loopback, for the exfil strategies (src/exfil/). */
export function agentEndpoint(port: number, caPath: string, agent: TestAgent): AgentEndpoint {
  return {
    host: '127.0.0.1',
    port,
    serverName: 'localhost',
    ca: readFileSync(caPath),
    cert: Buffer.from(agent.certPem),
    key: Buffer.from(agent.keyPem),
  };
}

/** Starts one of exfil-test's strategies (`h1-16`, `h2-64`, …); `stop()` resets every tunnel it opened. */
export function startDriving(
  endpoint: AgentEndpoint,
  authority: string,
  strategy: string,
): { readonly run: StrategyRun; stop(): Promise<void> } {
  const found = STRATEGIES.find((s) => s.name === strategy);
  if (found === undefined) throw new Error(`no strategy ${strategy}`);
  const run = new StrategyRun(endpoint, authority);
  const running = found.run(run).catch(() => {});
  return {
    run,
    async stop() {
      run.stop();
      await Promise.race([running, new Promise((resolve) => setTimeout(resolve, 5000))]);
    },
  };
}

/**
 * Drives a strategy for `ms` of traffic, then resets every tunnel. The duration only bounds the load;
 * tests judge what the sink counted.
 */
export async function drive(
  endpoint: AgentEndpoint,
  authority: string,
  strategy: string,
  ms: number,
): Promise<StrategyRun> {
  const driving = startDriving(endpoint, authority, strategy);
  await new Promise((resolve) => setTimeout(resolve, ms));
  await driving.stop();
  return driving.run;
}

/** Resolves once `sink` has counted at least `bytes` since its last reset (polled; the test's timeout bounds it). */
export async function untilSinkHas(sink: { total(): Promise<number> }, bytes: number): Promise<number> {
  for (;;) {
    const total = await sink.total();
    if (total >= bytes) return total;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
