import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { startGateway } from '../gateway/gateway.js';
import { LogEvent } from '../observability/events.js';
import { createLogger, flushLogger } from '../observability/logger.js';

/**
 * `agent-gateway serve`: load and validate the config (exit 2 on a bad one), start the gateway
 * (exit 1 if it cannot start, e.g. registry unreachable or at the wrong schema version), and drain
 * on SIGINT/SIGTERM within server.shutdown_grace_s, then exit 0.
 */
export async function runServe(configPath: string): Promise<number> {
  let loaded: Awaited<ReturnType<typeof loadConfig>>;
  try {
    loaded = await loadConfig(configPath);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const logger = createLogger(loaded.config.observability.log_level);
  if (loaded.config.observability.otlp_endpoint !== undefined) {
    // Say it loudly rather than let an operator believe spans are being exported.
    logger.warn(
      { key: 'observability.otlp_endpoint' },
      'OTLP export is not implemented; trace ids are logged only',
    );
  }
  let gateway: Awaited<ReturnType<typeof startGateway>>;
  try {
    gateway = await startGateway(loaded, { logger });
  } catch (err) {
    logger.fatal({ error: (err as Error).message }, LogEvent.startupFailed);
    await flushLogger(logger);
    process.stderr.write(`agent-gateway: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  const graceMs = loaded.config.server.shutdown_grace_s * 1000;
  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, LogEvent.signalReceived);
      gateway
        .shutdown(graceMs)
        .then(() => flushLogger(logger))
        .then(() => resolve(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
