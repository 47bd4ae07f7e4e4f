import { readFile } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import { encodeOidContent } from '../../identity/oid.js';
import { DEFAULT_IDENTITY_EXTENSION_OID } from '../../pki/identity-extension.js';
import { usageError } from './errors.js';

export interface OidOptions {
  /** --oid */
  readonly oid?: string;
  /** --config: a gateway config file whose policy.client_ext_oid to use. */
  readonly config?: string;
}

export interface IdentityOid {
  readonly dotted: string;
  /** DER content octets, as the gateway's certificate reader matches them. */
  readonly content: Buffer;
}

/**
 * The identity extension OID: --oid, or policy.client_ext_oid of the gateway config given with --config,
 * or the default. Only that one key is read from the config: creating an agent certificate on a workstation
 * must not require the gateway's database URL variable or TLS files to be present.
 */
export async function identityOid(opts: OidOptions): Promise<IdentityOid> {
  if (opts.oid !== undefined && opts.config !== undefined) {
    throw usageError('--oid and --config both name the identity OID: give one');
  }
  const dotted = opts.oid ?? (opts.config === undefined ? undefined : await oidFromConfig(opts.config));
  const chosen = dotted ?? DEFAULT_IDENTITY_EXTENSION_OID;
  return { dotted: chosen, content: encodeOidContent(chosen) };
}

async function oidFromConfig(path: string): Promise<string | undefined> {
  let doc: unknown;
  try {
    doc = parseToml(await readFile(path, 'utf8'));
  } catch (err) {
    throw usageError(`--config ${JSON.stringify(path)}: cannot read it as TOML: ${(err as Error).message}`);
  }
  const policy = (doc as { policy?: unknown }).policy;
  const oid =
    typeof policy === 'object' && policy !== null
      ? (policy as Record<string, unknown>)['client_ext_oid']
      : undefined;
  if (oid === undefined) return undefined;
  if (typeof oid !== 'string') {
    throw usageError(`--config ${JSON.stringify(path)}: policy.client_ext_oid must be a string`);
  }
  return oid;
}
