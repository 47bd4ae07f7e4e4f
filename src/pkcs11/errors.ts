// Every PKCS#11 failure carries a stable code, so the CLI can pick its exit code and tests and operators can
// match on it instead of on wording. Messages name the key's URI (which never holds a PIN: see uri.ts) and
// say what to do.

export type Pkcs11ErrorCode =
  | 'PKCS11_URI_INVALID'
  | 'PKCS11_MODULE_MISSING'
  | 'PKCS11_MODULE_LOAD_FAILED'
  | 'PKCS11_BINDING_UNAVAILABLE'
  | 'PKCS11_ENGINE_UNAVAILABLE'
  | 'PKCS11_TOKEN_NOT_FOUND'
  | 'PKCS11_TOKEN_AMBIGUOUS'
  | 'PKCS11_TOKEN_READ_ONLY'
  | 'PKCS11_OBJECT_NOT_FOUND'
  | 'PKCS11_OBJECT_AMBIGUOUS'
  | 'PKCS11_OBJECT_EXISTS'
  | 'PKCS11_PIN_INCORRECT'
  | 'PKCS11_PIN_LOCKED'
  | 'PKCS11_PIN_INVALID'
  | 'PKCS11_KEY_UNSUITABLE'
  | 'PKCS11_MECHANISM_UNSUPPORTED'
  | 'PKCS11_DEVICE_ERROR';

/**
 * `input`: the reference, the PIN, the module or the token's contents are not what the command needs; the
 * operator fixes the invocation (CLI exit 2). `device`: the token or its library failed (exit 1).
 */
export type Pkcs11ErrorKind = 'input' | 'device';

const DEVICE_CODES: ReadonlySet<Pkcs11ErrorCode> = new Set(['PKCS11_DEVICE_ERROR']);

export class Pkcs11Error extends Error {
  override name = 'Pkcs11Error';
  readonly kind: Pkcs11ErrorKind;

  constructor(
    readonly code: Pkcs11ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.kind = DEVICE_CODES.has(code) ? 'device' : 'input';
  }
}

/** CKR_* results (by their spec names, as pkcs11js reports them) that mean something the operator can fix. */
const CKR_CODES: Readonly<Record<string, Pkcs11ErrorCode>> = {
  CKR_PIN_INCORRECT: 'PKCS11_PIN_INCORRECT',
  CKR_PIN_LOCKED: 'PKCS11_PIN_LOCKED',
  CKR_PIN_INVALID: 'PKCS11_PIN_INVALID',
  CKR_PIN_LEN_RANGE: 'PKCS11_PIN_INVALID',
  CKR_PIN_EXPIRED: 'PKCS11_PIN_INVALID',
  CKR_USER_PIN_NOT_INITIALIZED: 'PKCS11_PIN_INVALID',
  CKR_TOKEN_NOT_PRESENT: 'PKCS11_TOKEN_NOT_FOUND',
  CKR_TOKEN_NOT_RECOGNIZED: 'PKCS11_TOKEN_NOT_FOUND',
  CKR_DEVICE_REMOVED: 'PKCS11_TOKEN_NOT_FOUND',
  CKR_SLOT_ID_INVALID: 'PKCS11_TOKEN_NOT_FOUND',
  CKR_TOKEN_WRITE_PROTECTED: 'PKCS11_TOKEN_READ_ONLY',
  CKR_SESSION_READ_ONLY: 'PKCS11_TOKEN_READ_ONLY',
  CKR_MECHANISM_INVALID: 'PKCS11_MECHANISM_UNSUPPORTED',
  CKR_MECHANISM_PARAM_INVALID: 'PKCS11_MECHANISM_UNSUPPORTED',
  CKR_CURVE_NOT_SUPPORTED: 'PKCS11_MECHANISM_UNSUPPORTED',
  CKR_DOMAIN_PARAMS_INVALID: 'PKCS11_MECHANISM_UNSUPPORTED',
  CKR_KEY_TYPE_INCONSISTENT: 'PKCS11_KEY_UNSUITABLE',
  CKR_KEY_FUNCTION_NOT_PERMITTED: 'PKCS11_KEY_UNSUITABLE',
  CKR_KEY_HANDLE_INVALID: 'PKCS11_OBJECT_NOT_FOUND',
  CKR_OBJECT_HANDLE_INVALID: 'PKCS11_OBJECT_NOT_FOUND',
};

const ADVICE: Readonly<Partial<Record<Pkcs11ErrorCode, string>>> = {
  PKCS11_PIN_INCORRECT:
    'the token refused the PIN: check the variable named by --pin-env (a token locks its PIN after a few ' +
    'wrong tries, so do not retry blindly)',
  PKCS11_PIN_LOCKED:
    "the user PIN is locked after too many wrong tries: the token's security officer must reset it",
  PKCS11_PIN_INVALID: 'the PIN is not acceptable to the token (length, expiry, or never set): set a user PIN',
  PKCS11_TOKEN_NOT_FOUND: 'the token is not present (unplugged, or removed from the module configuration)',
  PKCS11_TOKEN_READ_ONLY: 'the token is write-protected: new keys cannot be created on it',
  PKCS11_MECHANISM_UNSUPPORTED: 'the token does not support ECDSA on P-256, which the registry requires',
  PKCS11_KEY_UNSUITABLE: 'the key may not be used to sign (CKA_SIGN) or is not an EC key',
  PKCS11_OBJECT_NOT_FOUND: 'the key object disappeared from the token',
};

/** The pkcs11js failure of `action` (e.g. "logging in to token ... for pkcs11:..."), as a coded error. */
export function tokenFailure(error: unknown, action: string): Pkcs11Error {
  const ckr = /^CKR_[A-Z0-9_]+$/.test((error as Error | null)?.message ?? '')
    ? (error as Error).message
    : undefined;
  const code = (ckr === undefined ? undefined : CKR_CODES[ckr]) ?? 'PKCS11_DEVICE_ERROR';
  const advice =
    ADVICE[code] ?? "the token or its module failed; check the module's log and the device, then retry";
  const what = ckr ?? (error instanceof Error ? error.message : String(error));
  return new Pkcs11Error(code, `${action} failed (${what}): ${advice}`, { cause: error });
}
