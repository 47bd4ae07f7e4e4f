import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { startGateway } from '../gateway/gateway.js';
import { LogEvent } from '../observability/events.js';
import { createLogger, flushLogger, type Logger } from '../observability/logger.js';
import { deferStopSignals } from './stop-signals.js';

type Gateway = Awaited<ReturnType<typeof startGateway>>;

/**
 * `agent-gateway serve`: load and validate the config (exit 2 on a bad one), start the gateway (exit 1
 * if it cannot start, e.g. a registry at the wrong schema version; a registry that does not answer yet
 * only makes it start unready), re-read the config on SIGHUP (rate limits apply at once; a bad file is
 * logged and the old config kept), and drain on SIGINT/SIGTERM within server.shutdown_grace_s, then
 * exit 0.
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
  // Listening for SIGHUP before the slow start replaces Node's default (exit) at once; reloads queue
  // up behind the start and behind each other.
  let started: (gateway: Gateway | undefined) => void = () => {};
  let reloads: Promise<Gateway | undefined> = new Promise((resolve) => {
    started = resolve;
  });
  let stopping = false;
  const onHangup = () => {
    logger.info({ signal: 'SIGHUP' }, LogEvent.signalReceived);
    // Still handled while draining, so that a SIGHUP then does not kill the process (Node's default).
    if (stopping) return;
    reloads = reloads.then(async (gateway) => {
      if (gateway !== undefined) await reloadConfig(configPath, gateway, logger);
      return gateway;
    });
  };
  process.on('SIGHUP', onHangup);
  // Likewise SIGINT/SIGTERM: the `listening` line can reach a supervisor before start() returns here,
  // and a stop signal in that gap must drain the gateway, not kill it with Node's default action.
  const early = deferStopSignals();
  let gateway: Gateway;
  try {
    gateway = await startGateway(loaded, { logger });
    started(gateway);
  } catch (err) {
    started(undefined);
    process.off('SIGHUP', onHangup);
    early.cancel();
    logger.fatal({ error: (err as Error).message }, LogEvent.startupFailed);
    await flushLogger(logger);
    process.stderr.write(`agent-gateway: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  const graceMs = loaded.config.server.shutdown_grace_s * 1000;
  return new Promise<number>((resolve) => {
    early.onStop((signal) => {
      logger.info({ signal }, LogEvent.signalReceived);
      stopping = true;
      gateway
        .shutdown(graceMs)
        .then(() => flushLogger(logger))
        .then(() => resolve(0));
    });
    // A registry that was down at start answered at the wrong schema: stop as a failed start would.
    void gateway.fatal.then((err) => {
      if (stopping) return;
      stopping = true;
      logger.fatal({ error: err.message }, LogEvent.registrySchemaMismatch);
      process.stderr.write(`agent-gateway: stopping: ${err.message}\n`);
      gateway
        .shutdown(graceMs)
        .then(() => flushLogger(logger))
        .then(() => resolve(1));
    });
  });
}

/** Re-reads the config file for SIGHUP; a file that does not load changes nothing. */
async function reloadConfig(configPath: string, gateway: Gateway, logger: Logger): Promise<void> {
  let next: Awaited<ReturnType<typeof loadConfig>>;
  try {
    next = await loadConfig(configPath);
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
    logger.error({ config_path: configPath, problems }, LogEvent.configReloadFailed);
    return;
  }
  gateway.reload(next);
}
