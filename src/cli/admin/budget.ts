import type { Command } from 'commander';
import { listBudgetIdentities, peekBudget } from '../../budget/peek.js';
import { BUDGET_EXTENSION_VERSION } from '../../budget/postgres-store.js';
import { ConfigError } from '../../config/errors.js';
import { downloadSpec, limitsFor, type RateLimitSettings, uploadSpec } from '../../config/rate-limit.js';
import { readExtensionVersion } from '../../registry/migrate.js';
import { readRateLimitSettings } from '../rate-limit-file.js';
import { type Io, runCommand } from './action.js';
import { failure, usageError } from './errors.js';
import { addDatabaseUrlOption, addJsonOption, exitWith, nonEmpty } from './options.js';
import { withRegistry } from './registry-session.js';
import { printList } from './table.js';

export interface BudgetShowOptions {
  config: string;
  identity?: string;
  databaseUrl?: string;
  json?: boolean;
}

interface BudgetRow {
  identity: string;
  direction: 'upload' | 'download';
  bytes_per_second: number;
  burst_bytes: number;
  bucket_bytes: number | null;
  quota_bytes: number;
  quota_window_s: number;
  quota_used_bytes: number | null;
  quota_remaining_bytes: number | null;
  quota_free_again_s: number | null;
  leased_bytes: number;
  open_tunnels: number;
}

/**
 * `budget show`: per identity and direction, the rate and burst the config sets, what the shared bucket
 * holds now, the quota used and remaining in its sliding window, what gateways hold on lease, and the
 * tunnels open on all gateways. The limits come from the config (`--config`, only [rate_limit] is read);
 * the state from the registry, computed by the same functions the gateways call.
 */
export async function runBudgetShow(opts: BudgetShowOptions, io: Io): Promise<number> {
  return runCommand('budget show', io, async () => {
    let settings: RateLimitSettings;
    try {
      settings = await readRateLimitSettings(opts.config);
    } catch (err) {
      if (err instanceof ConfigError) throw usageError(err.message);
      throw err;
    }
    await withRegistry(opts.databaseUrl, io, async (sql) => {
      const version = await readExtensionVersion(sql);
      if (version < BUDGET_EXTENSION_VERSION) {
        throw failure(
          `this registry has no shared budgets (extension agent_gateway_ext is at version ${version}, budgets need ` +
            `${BUDGET_EXTENSION_VERSION}): run \`agent-gateway migrate\``,
        );
      }
      const identities =
        opts.identity !== undefined
          ? [opts.identity]
          : [...new Set([...(await listBudgetIdentities(sql)), ...settings.identities.keys()])].sort();
      const rows: BudgetRow[] = [];
      for (const identity of identities) {
        const limits = limitsFor(settings, identity);
        for (const [direction, spec] of [
          ['upload', uploadSpec(limits)],
          ['download', downloadSpec(limits)],
        ] as const) {
          const peek = await peekBudget(sql, identity, direction, spec);
          const quota = spec.quota ?? { bytes: 0, windowS: 86_400 };
          rows.push({
            identity,
            direction,
            bytes_per_second: spec.bytesPerSecond,
            burst_bytes: spec.burstBytes,
            bucket_bytes: peek.tokens === undefined ? null : Math.floor(peek.tokens),
            quota_bytes: quota.bytes,
            quota_window_s: quota.windowS,
            quota_used_bytes: peek.quotaUsed ?? null,
            quota_remaining_bytes:
              peek.quotaUsed === undefined ? null : Math.max(0, quota.bytes - peek.quotaUsed),
            quota_free_again_s:
              peek.quotaRetryS === undefined || peek.quotaRetryS === 0 ? null : Math.ceil(peek.quotaRetryS),
            leased_bytes: peek.leased,
            open_tunnels: peek.openTunnels,
          });
        }
      }
      if (rows.length === 0 && opts.json !== true) {
        io.out('no identity has budget state, and the config names none\n');
        return;
      }
      printList(
        io,
        opts.json,
        rows,
        [
          'IDENTITY',
          'DIRECTION',
          'RATE B/S',
          'BURST',
          'IN BUCKET',
          'QUOTA',
          'WINDOW S',
          'USED',
          'REMAINING',
          'FREE IN S',
          'LEASED',
          'TUNNELS',
        ],
        (r) => [
          r.identity,
          r.direction,
          r.bytes_per_second === 0 ? 'unlimited' : String(r.bytes_per_second),
          String(r.burst_bytes),
          r.bucket_bytes === null ? '-' : String(r.bucket_bytes),
          r.quota_bytes === 0 ? 'off' : String(r.quota_bytes),
          String(r.quota_window_s),
          r.quota_used_bytes === null ? '-' : String(r.quota_used_bytes),
          r.quota_remaining_bytes === null ? '-' : String(r.quota_remaining_bytes),
          r.quota_free_again_s === null ? '-' : String(r.quota_free_again_s),
          String(r.leased_bytes),
          String(r.open_tunnels),
        ],
      );
    });
  });
}

export function registerBudgetCommands(program: Command): void {
  const group = program.command('budget').description('shared byte budgets ([rate_limit] shared = true)');
  addDatabaseUrlOption(
    addJsonOption(
      group
        .command('show')
        .description(
          'per identity: rate, burst, the shared bucket now, quota used and remaining, leased bytes, open tunnels',
        )
        .requiredOption(
          '-c, --config <file>',
          "the gateways' config file (its [rate_limit] gives the limits)",
        )
        .option('--identity <id>', 'only this identity', nonEmpty('--identity')),
    ),
  ).action(exitWith(runBudgetShow));
}
