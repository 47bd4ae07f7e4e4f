import type { Io } from './action.js';
import { CliError, usageError } from './errors.js';

/**
 * Passphrases (and token PINs, see token-keys.ts) come from an environment variable named on the command
 * line, or from a prompt with echo off when there is a terminal. They are never taken as a flag value
 * (visible in `ps` and shell history) and never printed or logged.
 */

export interface NewKeyProtection {
  /** --passphrase-env VAR */
  readonly passphraseEnv?: string;
  /** --unencrypted */
  readonly unencrypted?: boolean;
}

/** The passphrase to encrypt a new private key with, or undefined for an explicitly unencrypted key. */
export async function passphraseForNewKey(opts: NewKeyProtection, io: Io): Promise<string | undefined> {
  if (opts.passphraseEnv !== undefined && opts.unencrypted === true) {
    throw usageError('--passphrase-env and --unencrypted exclude each other: choose one');
  }
  if (opts.unencrypted === true) return undefined;
  if (opts.passphraseEnv !== undefined) return secretFromEnv(opts.passphraseEnv, '--passphrase-env', io);
  if (!io.interactive) {
    throw usageError(
      'no passphrase for the new private key and no terminal to ask on: pass --passphrase-env VAR ' +
        '(the variable holds the passphrase) or --unencrypted',
    );
  }
  const first = await promptHidden('Passphrase for the new private key: ');
  if (first === '')
    throw usageError('empty passphrase: type one, or pass --unencrypted for an unencrypted key');
  const second = await promptHidden('Repeat the passphrase: ');
  if (first !== second) throw usageError('the two passphrases differ: nothing was written; try again');
  return first;
}

/**
 * The passphrase for an existing encrypted key file: from --passphrase-env, else asked on the terminal.
 * `flag` names the option that would supply it, for the error message.
 */
export async function passphraseForExistingKey(
  passphraseEnv: string | undefined,
  flag: string,
  path: string,
  io: Io,
): Promise<string> {
  if (passphraseEnv !== undefined) return secretFromEnv(passphraseEnv, flag, io);
  if (!io.interactive) {
    throw usageError(
      `${JSON.stringify(path)} is encrypted and there is no terminal to ask for its passphrase: ` +
        `pass ${flag} VAR with the passphrase in environment variable VAR`,
    );
  }
  return promptHidden(`Passphrase for ${path}: `);
}

/** The secret in the environment variable `name`, which the option `flag` named. */
export function secretFromEnv(name: string, flag: string, io: Io): string {
  const value = io.env[name];
  if (value === undefined || value === '') {
    throw usageError(`environment variable ${name} (named by ${flag}) is not set or is empty`);
  }
  return value;
}

/** Reads one line from the terminal without echoing it. Ctrl-C aborts the command (exit 130). */
export function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(question);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
    };
    const onData = (chunk: string) => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') {
          finish();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          finish();
          reject(new CliError('interrupted', 130));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on('data', onData);
  });
}
