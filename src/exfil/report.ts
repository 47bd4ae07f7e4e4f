import type { ExfilBudget, StrategyResult } from './run.js';

/**
 * The result table: per strategy, the most bytes in any window of each length against what the budget
 * allows there, and the attacker's ratio (bytes ÷ rate × W). Markdown, so it pastes into a ticket.
 */
export function formatReport(
  budget: ExfilBudget,
  windowsS: readonly number[],
  results: readonly StrategyResult[],
): string {
  const lines: string[] = [];
  lines.push(
    `budget: ${budget.bytesPerSecond} B/s, burst ${budget.burstBytes} B` +
      (budget.leaseBytes > 0 ? `, ${budget.gateways} gateway(s) x lease ${budget.leaseBytes} B` : '') +
      `, slack ${budget.slackMs} ms of the rate`,
    'allowed in a window of W s: rate x W + burst' +
      (budget.leaseBytes > 0 ? ' + gateways x lease' : '') +
      ' + slack',
    '',
  );
  const head = [
    'strategy',
    'tunnels (refused, failed)',
    'bytes',
    ...windowsS.map((w) => `${w} s: most / allowed (ratio)`),
    'verdict',
  ];
  lines.push(`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`);
  for (const r of results) {
    const cells = [
      `${r.strategy.name}: ${r.strategy.what}`,
      `${r.opened} (${r.refused}, ${r.failed})`,
      String(r.bytes),
      ...windowsS.map((w) => {
        const win = r.windows.find((x) => x.windowS === w);
        if (win === undefined) return '–';
        return `${win.mostBytes} / ${Math.floor(win.allowedBytes)} (${win.ratio.toFixed(3)})${win.ok ? '' : ' **over**'}`;
      }),
      verdict(r),
    ];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  const broken = results.filter((r) => !r.ok);
  if (results.length > 0 && results.every((r) => r.opened === 0)) {
    lines.push(
      '',
      'no CONNECT was answered 200: does the identity hold a permission for the sink address (and, for a ' +
        'private address, does egress.allow_cidrs name it)? See --sink-listen and --sink-authority.',
    );
  }
  lines.push(
    '',
    broken.length === 0
      ? `PASS: all ${results.length} strategies stayed within the budget in every window`
      : `FAIL: ${broken.map((r) => r.strategy.name).join(', ')}`,
  );
  return `${lines.join('\n')}\n`;
}

function verdict(r: StrategyResult): string {
  if (r.opened === 0) return 'no tunnel opened: not tested';
  if (r.bytes === 0) return 'nothing arrived: not tested';
  if (r.cutShort) return 'over (cut short: far beyond the budget)';
  return r.ok ? 'within' : 'over';
}
