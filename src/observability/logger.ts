import pino from 'pino';
import { stdoutDestination, TurnBatchedDestination } from './turn-batched-destination.js';

export type Logger = pino.Logger;

/** The levels a logger may run at ('silent' is for tests and embedding). */
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/**
 * A JSON-lines logger: one object per line, `msg` holds the event name (see events.ts), `level` is the
 * label ("info", not 30) so log queries need no lookup table, `time` is ISO-8601.
 *
 * No `pid`/`hostname`: the gateway runs one process per container or unit, and the platform's log
 * shipper already attaches the host, pod or unit; repeating them on every line only costs bytes. The
 * only base field is `service`, which tells our lines apart once aggregated.
 *
 * By default the destination is stdout, one synchronous write per event-loop turn (see
 * turn-batched-destination.ts for why); {@link flushLogger} writes what is pending.
 */
export function createLogger(
  level: string,
  destination?: NodeJS.WritableStream | pino.DestinationStream,
): Logger {
  if (!(LEVELS as readonly string[]).includes(level)) {
    throw new Error(`unknown log level "${level}": use one of ${LEVELS.join(', ')}`);
  }
  const stream = destination ?? stdoutDestination();
  return pino(
    {
      level,
      base: { service: 'agent-gateway' },
      messageKey: 'msg',
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

interface EventedStream {
  write(chunk: string, cb?: (err?: Error | null) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
}

/**
 * Resolves once every line logged so far has been handed to the operating system. Never rejects:
 * shutdown must go on even if stdout is gone.
 *
 * pino's own `logger.flush(cb)` calls back at once for an unbuffered async SonicBoom, while a write may
 * still be in flight; so we queue an empty write and wait for the stream to report it drained.
 */
export function flushLogger(logger: Logger): Promise<void> {
  const stream = (logger as unknown as Record<symbol, unknown>)[pino.symbols.streamSym];
  if (stream instanceof TurnBatchedDestination) {
    try {
      stream.flushSync();
    } catch {
      // stdout is gone; shutdown goes on.
    }
    return Promise.resolve();
  }
  if (!isEventedStream(stream)) return Promise.resolve();
  if (isSonicBoom(stream)) {
    if (stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        stream.off('drain', done);
        stream.off('error', done);
        stream.off('close', done);
        resolve();
      };
      stream.once('drain', done);
      stream.once('error', done);
      stream.once('close', done);
      // An empty write on an idle SonicBoom still goes through fs.write and emits 'drain'; on a busy
      // one it joins the queue, and 'drain' fires once everything before it is written.
      stream.write('');
    });
  }
  // A Node Writable calls a write's callback only after the data before it was flushed.
  return new Promise((resolve) => {
    try {
      stream.write('', () => resolve());
    } catch {
      resolve();
    }
  });
}

function isEventedStream(value: unknown): value is EventedStream {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v['write'] === 'function' && typeof v['once'] === 'function' && typeof v['off'] === 'function'
  );
}

/** SonicBoom (what pino.destination returns) has `flushSync`; Node Writables do not. */
function isSonicBoom(stream: EventedStream): stream is EventedStream & { destroyed: boolean } {
  return typeof (stream as unknown as Record<string, unknown>)['flushSync'] === 'function';
}
