/**
 * The signals a long-running command (`serve`, `sidecar`) handles besides the stop signals
 * (stop-signals.ts), so that none of them kills the process or opens a door into it:
 *
 * - SIGHUP reloads (the gateway's config and certificates, the sidecar's credentials); Node's default
 *   would exit with 129. A SIGHUP before start-up has finished queues its reload behind the start; one
 *   while stopping is logged and does nothing.
 * - SIGUSR1 and SIGUSR2 are ignored and logged. Node's defaults: SIGUSR1 opens the inspector on
 *   127.0.0.1:9229 (a debugger inside a process that holds TLS keys and the registry URL), SIGUSR2
 *   exits with 140 without a drain.
 *
 * `--disable-sigusr1` (the CLI's shebang) already keeps the inspector shut; the listener here covers a
 * launch that bypasses the shebang (`node dist/cli/main.js`): on Node 24 a JavaScript SIGUSR1 listener
 * replaces the inspector's handler. cli/main.ts installs a silent one before anything else is loaded, so
 * that the gap until a command installs its logging one is covered too.
 */

export const IGNORED_SIGNALS = ['SIGUSR1', 'SIGUSR2'] as const;
export type IgnoredSignal = (typeof IGNORED_SIGNALS)[number];

/** First thing in the process: SIGUSR1 must never open the inspector, for any command. */
export function muteInspectorSignal(): void {
  process.on('SIGUSR1', () => {});
}

export interface SignalHandlers<T> {
  /** Logs the signal: `reload` (a reload follows or is queued), `ignored`, or `stopping` (no reload). */
  readonly log: (signal: 'SIGHUP' | IgnoredSignal, what: 'reload' | 'ignored' | 'stopping') => void;
  /** Applies a reload to the running thing; must not throw (failures are logged by it). */
  readonly reload: (target: T) => Promise<void>;
  /** A reload threw all the same: logged, and the process runs on. */
  readonly reloadCrashed: (error: unknown) => void;
}

export interface ReloadAndIgnoredSignals<T> {
  /** Start-up finished: queued and later SIGHUPs reload `target`. */
  started(target: T): void;
  /** Draining: SIGHUP no longer reloads (but still does not kill). */
  stopping(): void;
  /** Start-up failed: queued reloads are dropped and the default handling is restored. */
  cancel(): void;
  /** Resolves once every reload asked for so far has run (tests, and an orderly stop). */
  settled(): Promise<void>;
}

/** Installs the SIGHUP, SIGUSR1 and SIGUSR2 listeners; call before the slow part of start-up. */
export function handleReloadAndIgnoredSignals<T>(handlers: SignalHandlers<T>): ReloadAndIgnoredSignals<T> {
  let target: T | undefined;
  let state: 'starting' | 'running' | 'stopping' | 'cancelled' = 'starting';
  let pending = 0;
  let queue: Promise<void> = Promise.resolve();
  let startedSignal: () => void = () => {};
  const startedOnce = new Promise<void>((resolve) => {
    startedSignal = resolve;
  });

  const onHangup = () => {
    if (state === 'stopping') {
      handlers.log('SIGHUP', 'stopping');
      return;
    }
    handlers.log('SIGHUP', 'reload');
    pending += 1;
    queue = queue
      .then(() => startedOnce)
      .then(async () => {
        if (state === 'running' && target !== undefined) await handlers.reload(target);
      })
      .catch((error: unknown) => handlers.reloadCrashed(error))
      .finally(() => {
        pending -= 1;
      });
  };
  const onIgnored = (signal: IgnoredSignal) => handlers.log(signal, 'ignored');

  process.on('SIGHUP', onHangup);
  for (const signal of IGNORED_SIGNALS) process.on(signal, onIgnored);

  return {
    started(running: T) {
      target = running;
      state = 'running';
      startedSignal();
    },
    stopping() {
      state = 'stopping';
    },
    cancel() {
      state = 'cancelled';
      startedSignal();
      process.off('SIGHUP', onHangup);
      for (const signal of IGNORED_SIGNALS) process.off(signal, onIgnored);
    },
    async settled() {
      while (pending > 0) await queue;
    },
  };
}
