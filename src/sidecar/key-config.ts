import { Pkcs11Error } from '../pkcs11/errors.js';
import { defaultEnginePath, PKCS11_MODULE_ENV } from '../pkcs11/settings.js';
import { isPkcs11Uri, parseKeyUri } from '../pkcs11/uri.js';

/**
 * The agent key in a PKCS#11 token (`sidecar.key_path` = `pkcs11:…`): the URI, the user PIN from the
 * variable named by `pin_env`, the module, and the OpenSSL engine TLS uses it through.
 */
export interface TokenKeyConfig {
  readonly uri: string;
  readonly pin: string;
  readonly modulePath: string;
  readonly enginePath: string;
}

export interface KeySettings {
  readonly keyPath: string | undefined;
  readonly passphraseEnv: string | undefined;
  readonly pinEnv: string | undefined;
  readonly module: string | undefined;
  readonly engine: string | undefined;
}

/**
 * Checks the key settings together: a pkcs11: key needs a PIN variable and a module and takes no
 * passphrase; a key file takes none of the token settings. Returns the token key, or undefined for a file.
 */
export function resolveTokenKey(
  settings: KeySettings,
  env: NodeJS.ProcessEnv,
  label: (key: string) => string,
  problems: string[],
): TokenKeyConfig | undefined {
  const { keyPath } = settings;
  if (keyPath === undefined) return undefined;
  if (!isPkcs11Uri(keyPath)) {
    for (const [key, value] of [
      ['pin_env', settings.pinEnv],
      ['pkcs11_module', settings.module],
      ['pkcs11_engine', settings.engine],
    ] as const) {
      if (value !== undefined) {
        problems.push(`${label(key)}: applies only to a pkcs11: key, and ${label('key_path')} is a key file`);
      }
    }
    return undefined;
  }
  const before = problems.length;
  try {
    parseKeyUri(keyPath);
  } catch (error) {
    if (!(error instanceof Pkcs11Error)) throw error;
    problems.push(`${label('key_path')}: ${error.message}`);
  }
  if (settings.passphraseEnv !== undefined) {
    problems.push(
      `${label('key_passphrase_env')}: a token key has no passphrase; its PIN comes from the variable named ` +
        'by --pin-env (sidecar.pin_env)',
    );
  }
  const pin = settings.pinEnv === undefined ? undefined : env[settings.pinEnv];
  if (settings.pinEnv === undefined) {
    problems.push(
      `sidecar.pin_env: required for a pkcs11: key; pass --pin-env VAR with the token's user PIN in ` +
        'environment variable VAR (never on the command line)',
    );
  } else if (pin === undefined || pin === '') {
    problems.push(`${label('pin_env')}: environment variable ${settings.pinEnv} is not set or is empty`);
  }
  const modulePath = settings.module ?? nonEmpty(env[PKCS11_MODULE_ENV]);
  if (modulePath === undefined) {
    problems.push(
      `sidecar.pkcs11_module: required for a pkcs11: key; pass --pkcs11-module PATH (or set ` +
        `${PKCS11_MODULE_ENV}) to the token's PKCS#11 library`,
    );
  }
  if (problems.length > before || pin === undefined || modulePath === undefined) return undefined;
  return { uri: keyPath, pin, modulePath, enginePath: settings.engine ?? defaultEnginePath() };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
