import { ConfigError } from '../config/errors.js';
import { loadConfig } from '../config/load.js';
import { effectiveConfig } from './effective-config.js';

/** Exit status for an invalid configuration (distinct from 1, an unexpected failure). */
export const EXIT_BAD_CONFIG = 2;

/**
 * `agent-gateway check-config`: validates a config file as the server would at start (including the
 * database URL variable, and the TLS certificate and key as a pair) without opening any connection. On
 * success prints the effective configuration (every value, defaults resolved) as pretty JSON with secrets
 * masked and returns 0; on a bad configuration prints
 * every problem and returns 2. `out` and `err` receive newline-terminated text to write as is. Errors other
 * than ConfigError are bugs or environment failures and propagate to the caller.
 */
export async function runCheckConfig(
  path: string,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  try {
    const loaded = await loadConfig(path);
    out(`${JSON.stringify(effectiveConfig(loaded), null, 2)}\n`);
    return 0;
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    err(`${error.message}\n`);
    return EXIT_BAD_CONFIG;
  }
}
