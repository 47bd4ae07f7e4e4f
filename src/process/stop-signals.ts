/**
 * SIGINT/SIGTERM handling installed before a server starts. Node's default action for these signals
 * is to exit at once; a supervisor that saw the `listening` line may signal before the start-up code
 * has returned, and the process must then drain like any other stop, not die mid-start.
 */
export interface DeferredStop {
  /** Runs `run` once, for the first SIGINT/SIGTERM, whether it came before this call or later. */
  onStop(run: (signal: NodeJS.Signals) => void): void;
  /** Start-up failed: restore the default handling. */
  cancel(): void;
}

/** `signals`: the ones that stop this process (a cluster worker leaves SIGINT to its primary). */
export function deferStopSignals(signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM']): DeferredStop {
  let received: NodeJS.Signals | undefined;
  let handler: ((signal: NodeJS.Signals) => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    remove();
    if (handler) handler(signal);
    else received = signal;
  };
  const remove = () => {
    for (const signal of signals) process.off(signal, onSignal);
  };
  for (const signal of signals) process.on(signal, onSignal);
  return {
    onStop(run) {
      handler = run;
      if (received !== undefined) run(received);
    },
    cancel: remove,
  };
}
