import type { Command } from 'commander';
import { ConfigError } from '../config/errors.js';

/**
 * `agent-gateway dashboard --config FILE`: the operators' web dashboard over every gateway of a registry.
 * The server code is imported only when this command runs, so `serve` never loads it.
 */
export function registerDashboardCommand(program: Command): void {
  program
    .command('dashboard')
    .description(
      'serve the web dashboard over every gateway of a registry: decisions, tunnels, bandwidth, the registry, revoke and close',
    )
    .option('-c, --config <file>', 'dashboard configuration file (TOML)', 'dashboard.toml')
    .action(async (opts: { config: string }) => {
      // Exit explicitly once stopped: an open browser connection must not keep the process alive.
      process.exit(await runDashboard(opts.config));
    });
}

async function runDashboard(configPath: string): Promise<number> {
  const [
    { loadDashboardConfig },
    { startDashboard },
    { createLogger, flushLogger },
    { WebBuildMissingError },
  ] = await Promise.all([
    import('./config.js'),
    import('./server.js'),
    import('../observability/logger.js'),
    import('./static-routes.js'),
  ]);
  let loaded: Awaited<ReturnType<typeof loadDashboardConfig>>;
  try {
    loaded = await loadDashboardConfig(configPath);
  } catch (error) {
    process.stderr.write(`agent-gateway dashboard: ${(error as Error).message}\n`);
    return error instanceof ConfigError ? 2 : 1;
  }
  const logger = createLogger('info', process.stdout);
  let running: Awaited<ReturnType<typeof startDashboard>>;
  try {
    running = await startDashboard(loaded, logger);
  } catch (error) {
    process.stderr.write(`agent-gateway dashboard: ${(error as Error).message}\n`);
    await flushLogger(logger);
    return error instanceof WebBuildMissingError ? 2 : 1;
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await running.stop();
  await flushLogger(logger);
  return 0;
}
