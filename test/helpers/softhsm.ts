// A throw-away SoftHSM2 for one test file: its own config and token directory in a temporary directory
// (SOFTHSM2_CONF), tokens initialized with Debian's softhsm2-util, and an inspector that reads key objects
// through pkcs11js directly, independent of src/pkcs11, to check what the CLI left in the token.
import { createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { run } from './cli-runner.js';

/** Debian's softhsm2 package; .ci/run installs it. */
export const SOFTHSM2_MODULE = '/usr/lib/softhsm/libsofthsm2.so';

export interface SoftHsm {
  readonly dir: string;
  /** SOFTHSM2_CONF and AGENT_GATEWAY_PKCS11_MODULE for the child processes under test. */
  readonly env: Record<string, string>;
  initToken(label: string, pin: string): Promise<void>;
  /** The protection attributes of every private key object labelled `object` in token `token`. */
  privateKeyProtection(token: string, pin: string, object: string): PrivateKeyProtection[];
  rawKeyPair(token: string, pin: string, opts: RawKeyPairOptions): void;
  deletePublicKey(token: string, pin: string, label: string): number;
  setPublicKeyId(token: string, pin: string, label: string, id: Buffer): void;
  cleanup(): Promise<void>;
}

export interface PrivateKeyProtection {
  readonly token: boolean;
  readonly sensitive: boolean;
  readonly extractable: boolean;
  readonly alwaysSensitive: boolean;
  readonly neverExtractable: boolean;
  /** What C_GetAttributeValue(CKA_VALUE) answered: the private scalar, or the CKR error. */
  readonly valueRead: string;
}

/** A key that never leaves its token: on the token, sensitive since creation, never extractable, unreadable. */
export const HARDWARE_HELD: PrivateKeyProtection = {
  token: true,
  sensitive: true,
  extractable: false,
  alwaysSensitive: true,
  neverExtractable: true,
  valueRead: 'CKR_ATTRIBUTE_SENSITIVE',
};

export async function startSoftHsm(): Promise<SoftHsm> {
  if (!existsSync(SOFTHSM2_MODULE)) {
    throw new Error(`${SOFTHSM2_MODULE} is missing: apt-get install softhsm2 (.ci/run installs it)`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'agent-gateway-softhsm-'));
  const conf = join(dir, 'softhsm2.conf');
  const tokens = join(dir, 'tokens');
  await writeFile(
    conf,
    `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  await mkdir(tokens);
  const env = { SOFTHSM2_CONF: conf, AGENT_GATEWAY_PKCS11_MODULE: SOFTHSM2_MODULE };
  return {
    dir,
    env,
    async initToken(label, pin) {
      const r = await run(
        'softhsm2-util',
        [
          '--init-token',
          '--free',
          '--label',
          label,
          '--pin',
          pin,
          '--so-pin',
          randomBytes(8).toString('hex'),
        ],
        { env: { ...process.env, ...env } },
      );
      if (r.code !== 0) throw new Error(`softhsm2-util --init-token failed: ${r.stderr}${r.stdout}`);
    },
    privateKeyProtection: (token, pin, object) => inspect(conf, token, pin, object),
    rawKeyPair: (token, pin, opts) => rawKeyPair(conf, token, pin, opts),
    deletePublicKey: (token, pin, label) => deletePublic(conf, token, pin, label),
    setPublicKeyId: (token, pin, label, id) => setPublicId(conf, token, pin, label, id),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * Runs `body` on a logged-in read-write session of token `tokenLabel`, through pkcs11js directly. When this
 * process already initialized the module (code under test holding a key), it is shared and left initialized.
 */
function withRawSession<T>(
  conf: string,
  tokenLabel: string,
  pin: string,
  body: (api: pkcs11js.PKCS11, session: pkcs11js.Handle) => T,
): T {
  const previous = process.env['SOFTHSM2_CONF'];
  process.env['SOFTHSM2_CONF'] = conf;
  const api = new pkcs11js.PKCS11();
  api.load(SOFTHSM2_MODULE);
  let initialized = true;
  try {
    api.C_Initialize();
  } catch (error) {
    if ((error as Error).message !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw error;
    initialized = false;
  }
  try {
    const slot = api.C_GetSlotList(true).find((s) => api.C_GetTokenInfo(s).label.trimEnd() === tokenLabel);
    if (slot === undefined) throw new Error(`no token ${tokenLabel}`);
    const session = api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      try {
        api.C_Login(session, pkcs11js.CKU_USER, pin);
      } catch (error) {
        if ((error as Error).message !== 'CKR_USER_ALREADY_LOGGED_IN') throw error;
      }
      return body(api, session);
    } finally {
      api.C_CloseSession(session);
    }
  } finally {
    if (initialized) api.C_Finalize();
    api.close();
    if (previous === undefined) delete process.env['SOFTHSM2_CONF'];
    else process.env['SOFTHSM2_CONF'] = previous;
  }
}

function findByLabel(api: pkcs11js.PKCS11, session: pkcs11js.Handle, cls: number, label: string) {
  api.C_FindObjectsInit(session, [
    { type: pkcs11js.CKA_CLASS, value: cls },
    { type: pkcs11js.CKA_LABEL, value: label },
  ]);
  const handles = api.C_FindObjects(session, 16);
  api.C_FindObjectsFinal(session);
  return handles;
}

function inspect(conf: string, tokenLabel: string, pin: string, object: string): PrivateKeyProtection[] {
  return withRawSession(conf, tokenLabel, pin, (api, session) =>
    findByLabel(api, session, pkcs11js.CKO_PRIVATE_KEY, object).map((handle) => {
      const flag = (type: number) => {
        const [attr] = api.C_GetAttributeValue(session, handle, [{ type }]);
        return attr?.value?.[0] === 1;
      };
      let valueRead: string;
      try {
        const [value] = api.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_VALUE }]);
        valueRead = `value of ${value?.value?.length ?? 0} bytes`;
      } catch (error) {
        valueRead = (error as Error).message;
      }
      return {
        token: flag(pkcs11js.CKA_TOKEN),
        sensitive: flag(pkcs11js.CKA_SENSITIVE),
        extractable: flag(pkcs11js.CKA_EXTRACTABLE),
        alwaysSensitive: flag(pkcs11js.CKA_ALWAYS_SENSITIVE),
        neverExtractable: flag(pkcs11js.CKA_NEVER_EXTRACTABLE),
        valueRead,
      };
    }),
  );
}

/** Objects the CLI would never make, to test how the code under test copes with what tokens may hold. */
export interface RawKeyPairOptions {
  readonly label: string;
  readonly id: Buffer;
  readonly sign?: boolean;
  readonly extractable?: boolean;
  /** Named curve OID (DER) of the key; P-256 by default. */
  readonly ecParams?: Buffer;
}

function rawKeyPair(conf: string, tokenLabel: string, pin: string, opts: RawKeyPairOptions): void {
  withRawSession(conf, tokenLabel, pin, (api, session) => {
    const common = [
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_LABEL, value: opts.label },
      { type: pkcs11js.CKA_ID, value: opts.id },
    ];
    api.C_GenerateKeyPair(
      session,
      { mechanism: pkcs11js.CKM_EC_KEY_PAIR_GEN },
      [
        ...common,
        { type: pkcs11js.CKA_EC_PARAMS, value: opts.ecParams ?? Buffer.from('06082a8648ce3d030107', 'hex') },
      ],
      [
        ...common,
        { type: pkcs11js.CKA_SIGN, value: opts.sign ?? true },
        { type: pkcs11js.CKA_SENSITIVE, value: opts.extractable !== true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: opts.extractable === true },
      ],
    );
  });
}

/** Deletes the public key objects labelled `label` (a token that kept only the private half). */
function deletePublic(conf: string, tokenLabel: string, pin: string, label: string): number {
  return withRawSession(conf, tokenLabel, pin, (api, session) => {
    const handles = findByLabel(api, session, pkcs11js.CKO_PUBLIC_KEY, label);
    for (const h of handles) api.C_DestroyObject(session, h);
    return handles.length;
  });
}

/** Gives the public key objects labelled `from` the CKA_ID `id` (to pair them with another private key). */
function setPublicId(conf: string, tokenLabel: string, pin: string, from: string, id: Buffer): void {
  withRawSession(conf, tokenLabel, pin, (api, session) => {
    for (const h of findByLabel(api, session, pkcs11js.CKO_PUBLIC_KEY, from)) {
      api.C_SetAttributeValue(session, h, [{ type: pkcs11js.CKA_ID, value: id }]);
    }
  });
}

/**
 * Every file under `dirs` that holds a private key in a form anyone could use: PEM armour, or bytes that
 * node:crypto parses as a DER PKCS#8 or SEC1 private key. Token object files (encrypted by SoftHSM under
 * a key derived from the PIN) are read too and must not qualify.
 */
export async function privateKeyFiles(dirs: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  const visit = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await visit(path);
        continue;
      }
      if (!entry.isFile()) continue;
      const bytes = await readFile(path);
      if (bytes.includes('PRIVATE KEY-----')) {
        found.push(path);
        continue;
      }
      for (const type of ['pkcs8', 'sec1'] as const) {
        try {
          createPrivateKey({ key: bytes, format: 'der', type });
          found.push(path);
          break;
        } catch {
          // not a private key in this encoding
        }
      }
    }
  };
  for (const dir of dirs) await visit(dir);
  return found;
}
