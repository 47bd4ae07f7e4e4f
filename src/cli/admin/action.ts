import { DestinationError } from '../../destination/normalize.js';
import { CertificateError } from '../../identity/client-certificate.js';
import { OidError } from '../../identity/oid.js';
import { Pkcs11Error } from '../../pkcs11/errors.js';
import { KeyFileError } from '../../pki/keys.js';
import { CanonicalFieldError } from '../../registry/canonical.js';
import { SchemaVersionError } from '../../registry/schema-version.js';
import { RegistryWriteError } from '../../registry/write-checks.js';
import { CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './errors.js';

/** Where a command writes and what it reads from its environment; tests and the demo pass their own. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  readonly env: NodeJS.ProcessEnv;
  /** Whether an interactive passphrase prompt is possible. */
  readonly interactive: boolean;
}

export const processIo: Io = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  env: process.env,
  interactive: process.stdin.isTTY === true && process.stderr.isTTY === true,
};

/**
 * Runs one command body and turns its outcome into an exit code and, on error, one message on stderr
 * prefixed with the command's name. Input-shaped errors from shared modules (a malformed destination, an
 * unreadable key) are bad arguments (2); registry refusals and database errors are failures (1).
 */
export async function runCommand(name: string, io: Io, body: () => Promise<unknown>): Promise<number> {
  try {
    const code = await body();
    return typeof code === 'number' ? code : EXIT_OK;
  } catch (err) {
    const { message, exitCode } = describe(err);
    io.err(`agent-gateway ${name}: ${message}\n`);
    return exitCode;
  }
}

function describe(err: unknown): { message: string; exitCode: number } {
  if (err instanceof CliError) return { message: err.message, exitCode: err.exitCode };
  if (err instanceof Pkcs11Error) {
    // The reference, PIN, module or token contents are wrong (2), or the device failed (1).
    return {
      message: `${err.message} [${err.code}]`,
      exitCode: err.kind === 'input' ? EXIT_USAGE : EXIT_FAILURE,
    };
  }
  if (
    err instanceof KeyFileError ||
    err instanceof DestinationError ||
    err instanceof CanonicalFieldError ||
    err instanceof OidError ||
    err instanceof CertificateError
  ) {
    return { message: err.message, exitCode: EXIT_USAGE };
  }
  if (err instanceof RegistryWriteError || err instanceof SchemaVersionError) {
    return { message: err.message, exitCode: EXIT_FAILURE };
  }
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'CONNECT_TIMEOUT' || code === 'ETIMEDOUT') {
    return {
      message: `cannot reach the registry database (${message}): check --database-url and that PostgreSQL is running`,
      exitCode: EXIT_FAILURE,
    };
  }
  if (typeof code === 'string')
    return { message: `database error ${code}: ${message}`, exitCode: EXIT_FAILURE };
  return { message, exitCode: EXIT_FAILURE };
}
