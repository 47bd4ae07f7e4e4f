/**
 * Exit codes of every admin command: 0 done, 1 the work failed (database refused, registry says no,
 * problems found), 2 the command line or an input file is wrong (fix the invocation and retry).
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** An error whose message is written for the operator as is, with the exit code to end with. */
export class CliError extends Error {
  override name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** Bad arguments or unusable input files (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(message, EXIT_USAGE);
}

/** The command was understood but could not be carried out (exit 1). */
export function failure(message: string): CliError {
  return new CliError(message, EXIT_FAILURE);
}
