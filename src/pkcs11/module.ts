// Loading a PKCS#11 module (the vendor's shared library) through pkcs11js.
//
// Why pkcs11js: it is the maintained Node binding (N-API, so one build serves every Node version; 2.1.7
// was released in 2026-08, graphene-pk11, a layer over it, last in 2024), it exposes the C API one to
// one, so what we call is what the PKCS#11 spec says, and it has async variants of C_Sign and
// C_GenerateKeyPair that run on the libuv pool. Measured here (SoftHSM2 2.6, Node 24): importing the
// binding ~7 ms, loading the module and C_Initialize 3-4 ms, one CKM_ECDSA signature 0.15-0.25 ms
// (means of 200 and 300), generating a P-256 key pair in the token with login ~50 ms. It is native:
// package.json lets its node-gyp build run under `npm ci` (allowScripts).
//
// It is imported lazily, only by commands that were given a pkcs11: URI: the gateway never loads it, and a
// missing native build fails only those commands, with a message that says how to build it.
//
// One module file is loaded once per process and shared. That matters beyond economy: PKCS#11 login state
// belongs to the application (this process), so the TLS engine that loads the same file in the sidecar
// sees the session this code logged in (see engine-tls-key.ts).
import { realpathSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type * as Pkcs11js from 'pkcs11js';
import { Pkcs11Error } from './errors.js';
import { MODULE_EXAMPLES } from './settings.js';

export type Binding = typeof import('pkcs11js');

export interface Pkcs11Module {
  /** The module file, absolute and with symlinks resolved: what was loaded, and what an engine must load. */
  readonly path: string;
  readonly api: Pkcs11js.PKCS11;
  /** pkcs11js's constants (CKA_*, CKM_*, ...). */
  readonly ck: Binding;
  /** Done with it: finalizes the module when nobody else in the process uses it. */
  release(): void;
  /** Never finalize this module while the process lives (an OpenSSL engine shares its state). */
  keepForProcess(): void;
}

interface Loaded {
  readonly api: Pkcs11js.PKCS11;
  readonly ck: Binding;
  /** False when C_Initialize said another user in this process initialized it first. */
  readonly initializedHere: boolean;
  users: number;
  kept: boolean;
}

const loaded = new Map<string, Promise<Loaded>>();

/** Where `--pkcs11-module` points, checked and loaded (once per process). */
export async function openModule(path: string): Promise<Pkcs11Module> {
  const real = moduleFile(path);
  let entry = loaded.get(real);
  if (entry === undefined) {
    entry = load(real);
    loaded.set(real, entry);
    entry.catch(() => loaded.delete(real));
  }
  const state = await entry;
  state.users++;
  let released = false;
  return {
    path: real,
    api: state.api,
    ck: state.ck,
    release() {
      if (released) return;
      released = true;
      state.users--;
      if (state.users > 0 || state.kept || !state.initializedHere) return;
      loaded.delete(real);
      try {
        state.api.C_Finalize();
      } finally {
        state.api.close();
      }
    },
    keepForProcess() {
      state.kept = true;
    },
  };
}

function moduleFile(path: string): string {
  const absolute = resolve(path);
  try {
    if (!statSync(absolute).isFile()) throw new Error('not a regular file');
    return realpathSync(absolute);
  } catch {
    throw new Pkcs11Error(
      'PKCS11_MODULE_MISSING',
      `PKCS#11 module ${JSON.stringify(absolute)} does not exist or is not a file: pass the vendor's ` +
        `module library with --pkcs11-module (${MODULE_EXAMPLES})`,
    );
  }
}

async function load(path: string): Promise<Loaded> {
  const ck = await binding();
  const api = new ck.PKCS11();
  try {
    api.load(path);
  } catch (error) {
    throw new Pkcs11Error(
      'PKCS11_MODULE_LOAD_FAILED',
      `cannot load PKCS#11 module ${JSON.stringify(path)} (${(error as Error).message}): is it a PKCS#11 ` +
        'library for this machine (architecture, dependencies)?',
      { cause: error },
    );
  }
  let initializedHere = true;
  try {
    api.C_Initialize();
  } catch (error) {
    if ((error as Error).message !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
      api.close();
      throw new Pkcs11Error(
        'PKCS11_MODULE_LOAD_FAILED',
        `PKCS#11 module ${JSON.stringify(path)} failed to initialize (${(error as Error).message}): check ` +
          "the module's own configuration (for SoftHSM2: SOFTHSM2_CONF and its tokendir)",
        { cause: error },
      );
    }
    // Someone else in this process (an OpenSSL engine) initialized it: share, and never finalize it.
    initializedHere = false;
  }
  return { api, ck, initializedHere, users: 0, kept: false };
}

let bindingPromise: Promise<Binding> | undefined;

function binding(): Promise<Binding> {
  bindingPromise ??= import('pkcs11js').then(
    (m) => m.default,
    (error: unknown) => {
      bindingPromise = undefined;
      throw new Pkcs11Error(
        'PKCS11_BINDING_UNAVAILABLE',
        `the PKCS#11 binding (pkcs11js) cannot be loaded (${(error as Error).message}): its native addon is ` +
          'built by `npm ci` (python3, make and a C++ compiler are needed); reinstall with scripts allowed',
        { cause: error },
      );
    },
  );
  return bindingPromise;
}
