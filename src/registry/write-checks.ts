import { parseP256Spki } from './signing-key.js';

/** Why an admin-side write was refused; the message names the input and what to do (the CLI prints it). */
export class RegistryWriteError extends Error {
  override name = 'RegistryWriteError';
}

export function requireText(name: string, value: string): void {
  if (typeof value !== 'string' || value === '')
    throw new RegistryWriteError(`${name} must be a non-empty string`);
  if (value.includes('\0')) throw new RegistryWriteError(`${name} contains a NUL character`);
}

export function assertP256Spki(spki: Buffer, what: string) {
  const parsed = parseP256Spki(spki);
  if ('problem' in parsed) throw new RegistryWriteError(`${what}: the public key ${parsed.problem}`);
  return parsed;
}
