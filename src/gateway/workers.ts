import cluster, { type Worker } from 'node:cluster';
import { LogEvent } from '../observability/events.js';
import type { Logger } from '../observability/logger.js';

/**
 * `server.workers = N` (N > 1): N gateway processes serving one port through node:cluster. The primary
 * process only supervises: it forks the workers (each runs `serve` as usual, with its own pools and
 * buckets, sharing budgets and tunnel caps through the registry: config requires `rate_limit.shared`
 * when any limit is set), restarts one that dies, forwards signals and relays their log lines.
 *
 * Why node:cluster rather than `reusePort`: the primary holds the listening socket, so the port stays
 * open while a worker restarts (or, later, while workers are replaced one by one), and a port of 0 is
 * the same port for every worker. Node's default on Linux is round-robin in the primary: it accepts each
 * connection and hands it to the next worker; a connection then lives in its worker, so tunnels pay no
 * relay through the primary.
 *
 * Signals: SIGHUP is forwarded to every worker (each reloads its config); SIGTERM and SIGINT become
 * SIGTERM to every worker, each drains within `server.shutdown_grace_s`, and the primary exits 0 when all
 * have exited (or kills what is left well after the grace). Workers ignore SIGINT themselves: a Ctrl-C
 * reaches the whole process group, and the primary's SIGTERM is the one stop they obey.
 *
 * Logs: workers write JSON lines to a pipe each; the primary copies whole lines to its stdout, so lines
 * of different workers never interleave mid-line. Each worker's lines carry `worker_id`.
 */

/** A worker tells the primary it is listening (after its start-up checks passed). */
export const WORKER_LISTENING = 'agent-gateway:listening';

export interface WorkersOptions {
  readonly workers: number;
  readonly logger: Logger;
  readonly shutdownGraceMs: number;
}

/** A worker that exits within this long of its previous start counts as failing to start. */
const RESTART_BACKOFF_MS = 1000;
/** Beyond the grace, workers that have not exited are killed: a stuck drain must not hang the host. */
const KILL_AFTER_GRACE_MS = 10_000;

/** True in a process forked by the primary. */
export function isWorker(): boolean {
  return cluster.isWorker;
}

/** The id the primary gave this worker (for its log lines), or undefined in a primary or single process. */
export function workerId(): number | undefined {
  return cluster.worker?.id;
}

/** In a worker: tell the primary the gateway is up. */
export function announceListening(): void {
  if (cluster.isWorker) process.send?.({ type: WORKER_LISTENING });
}

/**
 * In a worker: SIGINT is left to the primary (see above). The listener also keeps Node's default (exit)
 * from applying.
 */
export function ignoreInterruptInWorker(logger: Logger): void {
  if (!cluster.isWorker) return;
  process.on('SIGINT', () => logger.info({ signal: 'SIGINT' }, LogEvent.signalIgnored));
}

/**
 * Runs the primary until every worker has exited after a stop signal: 0. A worker that fails before it
 * ever listened (a bad certificate, an unreachable registry) stops them all: 1.
 */
export function runPrimary(options: WorkersOptions): Promise<number> {
  const { logger } = options;
  cluster.setupPrimary({ silent: true });
  let stopping = false;
  let failed = false;
  const listening = new Set<Worker>();
  const startedAt = new Map<Worker, number>();

  return new Promise<number>((resolve) => {
    const finishIfDone = (): void => {
      if (Object.keys(cluster.workers ?? {}).length === 0 && (stopping || failed)) resolve(failed ? 1 : 0);
    };

    const fork = (): void => {
      const worker = cluster.fork();
      startedAt.set(worker, Date.now());
      relayLines(worker.process.stdout, process.stdout);
      worker.process.stderr?.pipe(process.stderr, { end: false });
      worker.on('message', (message: unknown) => {
        if ((message as { type?: unknown } | null)?.type === WORKER_LISTENING) listening.add(worker);
      });
      worker.once('online', () =>
        logger.info({ worker_id: worker.id, worker_pid: worker.process.pid }, LogEvent.workerStarted),
      );
    };

    cluster.on('exit', (worker, code, signal) => {
      const everListened = listening.delete(worker);
      const ranFor = Date.now() - (startedAt.get(worker) ?? 0);
      startedAt.delete(worker);
      logger[stopping ? 'info' : 'warn'](
        { worker_id: worker.id, worker_pid: worker.process.pid, code, signal: signal ?? undefined },
        LogEvent.workerExited,
      );
      if (!stopping && !failed) {
        if (!everListened) {
          // It could not start: the others would fail alike. Stop them and report.
          failed = true;
          for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
        } else {
          setTimeout(fork, Math.max(0, RESTART_BACKOFF_MS - ranFor)).unref();
        }
      }
      finishIfDone();
    });

    const forward = (signal: NodeJS.Signals): void => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill(signal);
    };
    process.on('SIGHUP', () => {
      logger.info({ signal: 'SIGHUP' }, LogEvent.signalReceived);
      if (!stopping) forward('SIGHUP');
    });
    const stop = (signal: NodeJS.Signals): void => {
      logger.info({ signal }, LogEvent.signalReceived);
      if (stopping) return;
      stopping = true;
      forward('SIGTERM');
      setTimeout(() => forward('SIGKILL'), options.shutdownGraceMs + KILL_AFTER_GRACE_MS).unref();
      finishIfDone();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);

    for (let i = 0; i < options.workers; i++) fork();
  });
}

/**
 * Copies complete lines from a worker's stdout to ours, one write per chunk read, holding back a partial
 * last line until its end arrives; pauses the worker's pipe while our stdout is full (a stalled stdout
 * stalls the workers, as it would a single gateway).
 */
function relayLines(from: NodeJS.ReadableStream | null, to: NodeJS.WritableStream): void {
  if (from === null) return;
  let partial = '';
  from.setEncoding('utf8');
  from.on('data', (chunk: string) => {
    const text = partial + chunk;
    const end = text.lastIndexOf('\n');
    if (end < 0) {
      partial = text;
      return;
    }
    partial = text.slice(end + 1);
    if (!to.write(text.slice(0, end + 1))) {
      from.pause();
      to.once('drain', () => from.resume());
    }
  });
  from.on('end', () => {
    if (partial !== '') to.write(`${partial}\n`);
    partial = '';
  });
}
