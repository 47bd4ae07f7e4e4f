import type { AgentEndpoint } from './clients.js';
import type { CountingSink } from './sink.js';
import { type Strategy, StrategyRun } from './strategies.js';

/** The budget the test holds the gateway to: `rate × W + burst + gateways × lease`, plus measurement slack. */
export interface ExfilBudget {
  readonly bytesPerSecond: number;
  readonly burstBytes: number;
  /** Gateway processes the identity's tunnels may reach (shared budgets); 1 otherwise. */
  readonly gateways: number;
  /** The largest lease one gateway holds (0 without shared budgets). */
  readonly leaseBytes: number;
  /**
   * The sink timestamps a read, not the moment the gateway wrote it: reads delayed by a busy machine and
   * then delivered together look closer than they were sent. This much of the rate is allowed for that.
   */
  readonly slackMs: number;
}

export interface ExfilOptions {
  readonly endpoint: AgentEndpoint;
  readonly sink: CountingSink;
  /** The destination the agent CONNECTs to (the sink, as the gateway reaches it). */
  readonly authority: string;
  readonly budget: ExfilBudget;
  readonly seconds: number;
  readonly windowsS: readonly number[];
  readonly strategies: readonly Strategy[];
  /** Progress lines (one per strategy as it finishes). */
  readonly progress: (line: string) => void;
}

export interface WindowResult {
  readonly windowS: number;
  readonly mostBytes: number;
  readonly allowedBytes: number;
  /** mostBytes / (rate × W): what the attacker measured. */
  readonly ratio: number;
  readonly ok: boolean;
}

export interface StrategyResult {
  readonly strategy: Strategy;
  readonly opened: number;
  readonly refused: number;
  readonly failed: number;
  readonly bytes: number;
  /** Stopped before its time because the sink got far more than the budget allows. */
  readonly cutShort: boolean;
  readonly windows: readonly WindowResult[];
  readonly ok: boolean;
}

/** The allowed bytes in a window of `windowS` seconds. */
export function allowedIn(budget: ExfilBudget, windowS: number): number {
  return (
    budget.bytesPerSecond * windowS +
    budget.burstBytes +
    budget.gateways * budget.leaseBytes +
    (budget.bytesPerSecond * budget.slackMs) / 1000
  );
}

/** Arrivals still on their way when a strategy stops count too: wait this long for them. */
const DRAIN_MS = 300;
const POLL_MS = 100;
const STOP_WAIT_MS = 5000;

/**
 * Runs each strategy for `seconds`, one after the other, each from a full bucket (it waits for the burst
 * and any held lease to come back first), and judges the most bytes the sink received in any window of
 * each length against the budget. Bounded: a strategy is cut short once the sink has four times what the
 * whole run may carry, and every tunnel is reset (not drained) when its time is up.
 */
export async function runExfilTest(options: ExfilOptions): Promise<StrategyResult[]> {
  const { budget, sink } = options;
  const results: StrategyResult[] = [];
  const cap = 4 * allowedIn(budget, options.seconds) + 1024 * 1024;
  // A full bucket again: the burst refilled at the rate, and leases held by idle gateways handed back (1 s).
  const refillMs = Math.max(
    1500,
    ((budget.burstBytes + budget.gateways * budget.leaseBytes) / budget.bytesPerSecond) * 1000 + 500,
  );
  for (const strategy of options.strategies) {
    await sleep(refillMs);
    await sink.reset();
    const run = new StrategyRun(options.endpoint, options.authority);
    const running = strategy.run(run).catch(() => {
      // A strategy that fails outright (the gateway went away) is judged on what reached the sink.
    });
    const deadline = performance.now() + options.seconds * 1000;
    let cutShort = false;
    while (performance.now() < deadline) {
      await sleep(POLL_MS);
      if ((await sink.total()) > cap) {
        cutShort = true;
        break;
      }
    }
    run.stop();
    // Every tunnel was reset; a strategy still waiting on the network must not hold up the next one.
    await Promise.race([running, sleep(STOP_WAIT_MS)]);
    await sleep(DRAIN_MS);
    const counter = await sink.snapshot();
    const windows = options.windowsS
      .filter((w) => w <= options.seconds)
      .map((windowS): WindowResult => {
        const mostBytes = counter.maxIn(windowS * 1000);
        const allowedBytes = allowedIn(budget, windowS);
        return {
          windowS,
          mostBytes,
          allowedBytes,
          ratio: mostBytes / (budget.bytesPerSecond * windowS),
          ok: mostBytes <= allowedBytes,
        };
      });
    const result: StrategyResult = {
      strategy,
      opened: run.opened,
      refused: run.refused,
      failed: run.failed,
      bytes: counter.total,
      cutShort,
      windows,
      ok: !cutShort && run.opened > 0 && counter.total > 0 && windows.every((w) => w.ok),
    };
    results.push(result);
    options.progress(describe(result));
  }
  return results;
}

function describe(r: StrategyResult): string {
  const windows = r.windows
    .map((w) => `${w.windowS} s ${w.ratio.toFixed(3)}${w.ok ? '' : ' BROKEN'}`)
    .join(', ');
  return `${r.strategy.name}: ${r.opened} tunnels (${r.refused} refused, ${r.failed} failed), ${r.bytes} bytes; ${windows}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
