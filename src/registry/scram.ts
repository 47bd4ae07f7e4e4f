import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * A PostgreSQL SCRAM-SHA-256 password verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
 * RFC 5802 / RFC 7677 keys), computed here so that `CREATE/ALTER ROLE … PASSWORD` carries the verifier
 * and never the password: a literal password in DDL would reach the server log (log_statement) and
 * pg_stat_activity. psql's `\password` does the same; no maintained Node library exports it (the drivers
 * implement only the client side of the exchange), and it is a few lines of node:crypto.
 */

/** PostgreSQL's default (scram_iterations). */
const ITERATIONS = 4096;
const SALT_BYTES = 16;

export class PasswordError extends Error {
  override name = 'PasswordError';
}

export function scramSha256Verifier(password: string, salt: Buffer = randomBytes(SALT_BYTES)): string {
  const problem = passwordProblem(password);
  if (problem !== undefined) throw new PasswordError(problem);
  const keys = scramKeys(password, salt, ITERATIONS);
  return (
    `SCRAM-SHA-256$${ITERATIONS}:${salt.toString('base64')}$` +
    `${keys.storedKey.toString('base64')}:${keys.serverKey.toString('base64')}`
  );
}

/** The keys a server stores, from which it checks a client's proof and signs its own final message. */
export function scramKeys(
  password: string,
  salt: Buffer,
  iterations: number,
): { clientKey: Buffer; storedKey: Buffer; serverKey: Buffer } {
  const salted = pbkdf2Sync(password, salt, iterations, 32, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return {
    clientKey,
    storedKey: createHash('sha256').update(clientKey).digest(),
    serverKey: hmac(salted, 'Server Key'),
  };
}

/**
 * PostgreSQL runs the password through SASLprep (RFC 4013) before hashing. For printable ASCII that is the
 * identity; for anything else it normalizes and maps characters, which this module does not implement, so
 * such passwords are refused rather than stored in a form no client could match.
 */
function passwordProblem(password: string): string | undefined {
  if (password.length === 0) return 'the password is empty';
  if (!/^[\x20-\x7e]+$/.test(password)) {
    return 'the password must consist of printable ASCII characters (space to ~); generate one with e.g. `openssl rand -base64 24`';
  }
  if (password.length < 16)
    return 'the password is shorter than 16 characters; generate one with e.g. `openssl rand -base64 24`';
  return undefined;
}

export function hmac(key: Buffer, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}
