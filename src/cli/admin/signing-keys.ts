import { type KeyObject, sign } from 'node:crypto';
import type { Command } from 'commander';
import { Pkcs11Error } from '../../pkcs11/errors.js';
import { MODULE_EXAMPLES, PKCS11_MODULE_ENV } from '../../pkcs11/settings.js';
import type { Token } from '../../pkcs11/token.js';
import type { TokenKey } from '../../pkcs11/token-key.js';
import { isPkcs11Uri } from '../../pkcs11/uri.js';
import { p1363ToDer } from '../../pki/ecdsa-signature.js';
import { keyObjectSigner, type P256Signer } from '../../pki/signer.js';
import type { Io } from './action.js';
import { usageError } from './errors.js';
import { loadP256KeyFile } from './key-files.js';
import { promptHidden, secretFromEnv } from './passphrase.js';

/**
 * The private keys operators pass by flag (a principal's `--key`, a CA's `--ca-key`): a PEM file as before,
 * or an RFC 7512 `pkcs11:` URI of a key inside a token. A token key's PIN comes from the variable named by
 * the PIN flag or from a prompt, exactly like a passphrase; its module from --pkcs11-module or
 * AGENT_GATEWAY_PKCS11_MODULE. The PKCS#11 code is loaded only when a URI is given.
 */
export interface SigningKey {
  readonly signer: P256Signer;
  /** The file, or the token key's resolved URI (token label and serial, object, id). */
  readonly description: string;
  /** A DER ECDSA-P256/SHA-256 signature, as the registry stores it. */
  signDer(data: Buffer): Promise<Buffer>;
  /** Ends the token session; a no-op for a file. */
  close(): void;
}

export interface KeySecrets {
  readonly passphraseEnv?: string | undefined;
  readonly passphraseFlag: string;
  readonly pinEnv?: string | undefined;
  readonly pinFlag: string;
  readonly pkcs11Module?: string | undefined;
}

/** The secrets flags that go with a command's `--key` (or `--out`): --passphrase-env, --pin-env, --pkcs11-module. */
export function keyFlagSecrets(opts: {
  passphraseEnv?: string;
  pinEnv?: string;
  pkcs11Module?: string;
}): KeySecrets {
  return {
    passphraseEnv: opts.passphraseEnv,
    passphraseFlag: '--passphrase-env',
    pinEnv: opts.pinEnv,
    pinFlag: '--pin-env',
    pkcs11Module: opts.pkcs11Module,
  };
}

/** `--pin-env` (or `--ca-pin-env`) and `--pkcs11-module` for a command whose key flag takes a URI. */
export function addTokenOptions(command: Command, flags = { pin: '--pin-env', key: '--key' }): Command {
  command.option(
    `${flags.pin} <var>`,
    `environment variable holding the token PIN when ${flags.key} is a pkcs11: URI (else asked)`,
  );
  if (command.options.some((o) => o.long === '--pkcs11-module')) return command;
  return command.option(
    '--pkcs11-module <path>',
    `PKCS#11 library for pkcs11: keys (default: $${PKCS11_MODULE_ENV})`,
  );
}

/** The key named by `flag`: a PEM file (decrypted with its passphrase) or a token key (after login). */
export async function loadSigningKey(
  value: string,
  flag: string,
  secrets: KeySecrets,
  io: Io,
): Promise<SigningKey> {
  if (isPkcs11Uri(value)) {
    const { openTokenKey, protectionWarnings } = await import('../../pkcs11/token-key.js');
    const key = await onToken(flag, () => openTokenKey(tokenOptions(value, flag, secrets, io)));
    for (const warning of protectionWarnings(key)) io.err(`warning: ${flag}: ${warning}\n`);
    return tokenSigningKey(key);
  }
  if (secrets.pinEnv !== undefined) {
    throw usageError(`${secrets.pinFlag} applies only to a pkcs11: key, and ${flag} is a key file`);
  }
  const key = await loadP256KeyFile(value, flag, secrets.passphraseEnv, secrets.passphraseFlag, io);
  return fileSigningKey(key, value, flag);
}

/** Generates the key pair `value` (a pkcs11: URI) names inside its token. */
export async function createTokenSigningKey(
  value: string,
  flag: string,
  secrets: KeySecrets,
  io: Io,
): Promise<SigningKey> {
  const { generateTokenKey } = await import('../../pkcs11/keygen.js');
  return tokenSigningKey(await onToken(flag, () => generateTokenKey(tokenOptions(value, flag, secrets, io))));
}

function fileSigningKey(key: KeyObject, path: string, flag: string): SigningKey {
  return {
    signer: keyObjectSigner(key, `${flag} ${JSON.stringify(path)}`),
    description: path,
    signDer: async (data) => sign('sha256', data, key),
    close: () => {},
  };
}

function tokenSigningKey(key: TokenKey): SigningKey {
  return {
    signer: key,
    description: key.resolvedUri,
    signDer: async (data) => p1363ToDer(await key.signP1363(data)),
    close: () => key.close(),
  };
}

function tokenOptions(uri: string, flag: string, secrets: KeySecrets, io: Io) {
  if (secrets.passphraseEnv !== undefined) {
    throw usageError(
      `${secrets.passphraseFlag} applies to key files; the token key ${flag} takes its PIN from ${secrets.pinFlag}`,
    );
  }
  return { uri, modulePath: modulePath(secrets, io), pin: (token: Token) => tokenPin(token, secrets, io) };
}

function modulePath(secrets: KeySecrets, io: Io): string {
  const path = secrets.pkcs11Module ?? io.env[PKCS11_MODULE_ENV];
  if (path === undefined || path === '') {
    throw usageError(
      `a pkcs11: key needs its PKCS#11 module: pass --pkcs11-module PATH or set ${PKCS11_MODULE_ENV} ` +
        `(${MODULE_EXAMPLES})`,
    );
  }
  return path;
}

/** The user PIN, asked only after the token was found, so the prompt can say which token it is for. */
async function tokenPin(token: Token, secrets: KeySecrets, io: Io): Promise<string> {
  if (secrets.pinEnv !== undefined) return secretFromEnv(secrets.pinEnv, secrets.pinFlag, io);
  if (!io.interactive) {
    throw usageError(
      `no PIN for token ${JSON.stringify(token.label)} and no terminal to ask on: pass ${secrets.pinFlag} VAR ` +
        '(the variable holds the PIN)',
    );
  }
  const pin = await promptHidden(`PIN for token ${JSON.stringify(token.label)} (serial ${token.serial}): `);
  if (pin === '') throw usageError('empty PIN: nothing was done');
  return pin;
}

/** Token errors keep their code and get the flag that named the key in front. */
async function onToken<T>(flag: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error) {
    if (!(error instanceof Pkcs11Error)) throw error;
    throw new Pkcs11Error(error.code, `${flag}: ${error.message}`, { cause: error });
  }
}
