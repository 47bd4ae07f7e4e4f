/**
 * Waits for an event the test expects, failing with `what` if it has not happened after `boundMs`. The
 * bound is not an assertion about how fast the gateway is (it is many times what the event needs on a
 * loaded machine); it turns "never happens", which is what a leak looks like, into a failure instead
 * of a hung test.
 */
export function within<T>(promise: Promise<T>, boundMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${boundMs} ms`)), boundMs);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

/** Resolves once `condition()` holds, checking every 20 ms; fails with `what` after `boundMs`. */
export async function until(condition: () => boolean, boundMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + boundMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what()}: not within ${boundMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
