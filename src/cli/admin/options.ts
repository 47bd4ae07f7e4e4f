import { type Command, InvalidArgumentError } from 'commander';
import type postgres from 'postgres';
import type { TimeInput } from '../../registry/write-window.js';
import { DATABASE_URL_ENV } from '../database-url.js';
import { type Io, processIo } from './action.js';
import { usageError } from './errors.js';

/** Commander argument parsers and the option groups several commands share. */

export function nonEmpty(flag: string) {
  return (value: string): string => {
    if (value.trim() === '') throw new InvalidArgumentError(`${flag} must not be empty`);
    return value;
  };
}

export function positiveInt(flag: string) {
  return (value: string): number => {
    if (!/^[1-9][0-9]{0,5}$/.test(value)) {
      throw new InvalidArgumentError(
        `${flag} must be a whole number from 1 to 999999, not ${JSON.stringify(value)}`,
      );
    }
    return Number(value);
  };
}

/** File name stems (`--name`): one path component, nothing a shell would trip over. */
export function fileStem(value: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(value)) {
    throw new InvalidArgumentError(
      `--name ${JSON.stringify(value)} must start with a letter or digit and hold only letters, digits, '.', '_' or '-'`,
    );
  }
  return value;
}

/** For repeatable options (`--dns a --dns b`). */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** A commander action that runs a command body and makes its result the process's exit code. */
export function exitWith<T>(run: (opts: T, io: Io) => Promise<number>): (opts: T) => Promise<void> {
  return async (opts) => {
    process.exitCode = await run(opts, processIo);
  };
}

export function addDatabaseUrlOption(command: Command): Command {
  return command.option(
    '--database-url <url>',
    `PostgreSQL URL of the registry (default: $${DATABASE_URL_ENV})`,
    nonEmpty('--database-url'),
  );
}

export function addJsonOption(command: Command): Command {
  return command.option('--json', 'print JSON instead of a table');
}

export interface WindowOptions {
  notBefore?: string;
  notAfter?: string;
  validFor?: string;
}

export function addWindowOptions(command: Command, defaultLength: string): Command {
  return command
    .option(
      '--not-before <time>',
      'start of validity: a timestamp (2026-05-01T00:00:00Z), now, or +/-INTERVAL from now (default: now, on the database clock)',
      nonEmpty('--not-before'),
    )
    .option('--not-after <time>', 'end of validity, same forms as --not-before', nonEmpty('--not-after'))
    .option(
      '--valid-for <interval>',
      `length of validity when --not-after is absent, a PostgreSQL interval (default: ${defaultLength})`,
      nonEmpty('--valid-for'),
    );
}

export interface WindowInput {
  notBefore?: TimeInput;
  notAfter?: TimeInput;
  lifetime?: string;
}

/**
 * Turns the window flags into the writer's input, checking every value with PostgreSQL itself (the clock
 * and parser the rows are written with) so that a typo is reported against its flag, before any write.
 */
export async function windowInput(sql: postgres.Sql, opts: WindowOptions): Promise<WindowInput> {
  if (opts.notAfter !== undefined && opts.validFor !== undefined) {
    throw usageError('--not-after and --valid-for both set the end of validity: give one');
  }
  const out: WindowInput = {};
  if (opts.notBefore !== undefined) out.notBefore = await timeInput(sql, '--not-before', opts.notBefore);
  if (opts.notAfter !== undefined) out.notAfter = await timeInput(sql, '--not-after', opts.notAfter);
  if (opts.validFor !== undefined) out.lifetime = await interval(sql, '--valid-for', opts.validFor);
  return out;
}

async function timeInput(sql: postgres.Sql, flag: string, value: string): Promise<TimeInput> {
  const text = value.trim();
  if (text.startsWith('+') || text.startsWith('-')) return { fromNow: await interval(sql, flag, text) };
  try {
    await sql`SELECT ${text}::text::timestamptz`;
  } catch {
    throw usageError(
      `${flag} ${JSON.stringify(value)} is not a time PostgreSQL understands: use e.g. 2026-05-01T00:00:00Z, ` +
        'now, or an offset such as +2hours / -1day',
    );
  }
  return text;
}

async function interval(sql: postgres.Sql, flag: string, value: string): Promise<string> {
  try {
    await sql`SELECT ${value}::text::interval`;
  } catch {
    throw usageError(
      `${flag} ${JSON.stringify(value)} is not an interval PostgreSQL understands: use e.g. "90 days" or "12 hours"`,
    );
  }
  return value;
}
