import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { startGateway } from '../gateway/gateway.js';
import {
  announceListening,
  ignoreInterruptInWorker,
  isWorker,
  runPrimary,
  workerId,
} from '../gateway/workers.js';
import { LogEvent } from '../observability/events.js';
import { createLogger, flushLogger, type Logger } from '../observability/logger.js';
import { handleReloadAndIgnoredSignals } from '../process/reload-signals.js';
import { deferStopSignals } from '../process/stop-signals.js';

type Gateway = Awaited<ReturnType<typeof startGateway>>;

/**
 * `agent-gateway serve`: load and validate the config (exit 2 on a bad one), start the gateway
 * (exit 1 if it cannot start, e.g. a registry at the wrong schema version; a registry that does not
 * answer yet only makes it start unready), re-read the
 * config and the TLS certificates on SIGHUP (rate limits and certificates apply at once; a bad file is
 * logged and the old config kept), ignore SIGUSR1/SIGUSR2, and drain on SIGINT/SIGTERM within
 * server.shutdown_grace_s, then exit 0.
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
  const processLogger = createLogger(loaded.config.observability.log_level);
  // server.workers > 1: this process supervises the workers (gateway/workers.ts) and serves nothing.
  if (loaded.config.server.workers > 1 && !isWorker()) {
    const code = await runPrimary({
      workers: loaded.config.server.workers,
      logger: processLogger,
      shutdownGraceMs: loaded.config.server.shutdown_grace_s * 1000,
    });
    await flushLogger(processLogger);
    return code;
  }
  const id = workerId();
  const logger = id === undefined ? processLogger : processLogger.child({ worker_id: id });
  ignoreInterruptInWorker(logger);
  // Installed before the slow start: SIGHUP, SIGUSR1 and SIGUSR2 must not kill the process (Node's
  // defaults) in the gap either; a SIGHUP then queues its reload behind the start.
  const signals = handleReloadAndIgnoredSignals<Gateway>({
    log: (signal, what) =>
      logger.info({ signal }, what === 'ignored' ? LogEvent.signalIgnored : LogEvent.signalReceived),
    reload: (gateway) => reloadConfig(configPath, gateway, logger),
    reloadCrashed: (error) =>
      logger.error({ config_path: configPath, problems: [String(error)] }, LogEvent.configReloadFailed),
  });
  // Likewise SIGINT/SIGTERM: the `listening` line can reach a supervisor before start() returns here,
  // and a stop signal in that gap must drain the gateway, not kill it with Node's default action.
  // A worker stops on the primary's SIGTERM only (see gateway/workers.ts).
  const early = deferStopSignals(isWorker() ? ['SIGTERM'] : ['SIGINT', 'SIGTERM']);
  let gateway: Gateway;
  try {
    gateway = await startGateway(loaded, { logger });
    signals.started(gateway);
    announceListening();
  } catch (err) {
    signals.cancel();
    early.cancel();
    logger.fatal({ error: (err as Error).message }, LogEvent.startupFailed);
    await flushLogger(logger);
    process.stderr.write(`agent-gateway: cannot start: ${(err as Error).message}\n`);
    return 1;
  }
  const graceMs = loaded.config.server.shutdown_grace_s * 1000;
  let stopping = false;
  return new Promise<number>((resolve) => {
    early.onStop((signal) => {
      logger.info({ signal }, LogEvent.signalReceived);
      if (stopping) return;
      stopping = true;
      signals.stopping();
      gateway
        .shutdown(graceMs)
        .then(() => flushLogger(logger))
        .then(() => resolve(0));
    });
    // A registry that was down at start answered at the wrong schema: stop as a failed start would.
    void gateway.fatal.then((err) => {
      if (stopping) return;
      stopping = true;
      signals.stopping();
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
  await gateway.reload(next);
}
