import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import type { EgressGuard, EgressRefusal } from './guard.js';

/**
 * Resolve a destination host once and vet every answer. The vetted address is what gets dialled
 * (dial.ts), never the name again: a second lookup could return a different address (DNS rebinding)
 * after the check passed.
 */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type LookupFn = (host: string) => Promise<ResolvedAddress[]>;

export type ResolveErrorKind = 'not_found' | 'timeout' | 'failed';

export class ResolveError extends Error {
  override name = 'ResolveError';
  readonly kind: ResolveErrorKind;
  /** The resolver's error code (e.g. 'ENOTFOUND', 'EAI_AGAIN') when there was one. */
  readonly code?: string;

  constructor(kind: ResolveErrorKind, message: string, options?: { code?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    if (options?.code !== undefined) this.code = options.code;
  }
}

export type VetResult =
  | { ok: true; address: ResolvedAddress }
  | { ok: false; kind: 'egress_refused'; refusal: EgressRefusal }
  | { ok: false; kind: 'lookup_failed'; error: ResolveError };

export interface ResolveOptions {
  timeoutMs: number;
  lookup?: LookupFn;
}

/** getaddrinfo through libuv: honours /etc/hosts and nsswitch like the rest of the system; answers in resolver order. */
export const systemLookup: LookupFn = async (host) => {
  const answers = await dns.lookup(host, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** Codes meaning "this name has no address", as opposed to "the resolver could not answer". */
const NOT_FOUND_CODES = new Set(['ENOTFOUND', 'ENODATA', 'EAI_NONAME', 'EAI_NODATA', 'NXDOMAIN']);
const TIMEOUT_CODES = new Set(['ETIMEOUT', 'ETIMEDOUT']);

export async function resolveHost(host: string, opts: ResolveOptions): Promise<ResolvedAddress[]> {
  // An IP literal is its own answer: looking it up would only give the resolver a chance to disagree.
  const literal = isIP(host);
  if (literal !== 0) return [{ address: host, family: literal === 6 ? 6 : 4 }];
  if (host === '') throw new ResolveError('failed', 'cannot resolve an empty host name');

  const lookup = opts.lookup ?? systemLookup;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ResolveError(
            'timeout',
            `DNS lookup of ${JSON.stringify(host)} took longer than ${opts.timeoutMs} ms; check the resolver or raise the timeout`,
          ),
        ),
      opts.timeoutMs,
    );
  });
  let answers: ResolvedAddress[];
  try {
    // getaddrinfo cannot be cancelled: on timeout it finishes in the background and its answer is dropped.
    answers = await Promise.race([lookup(host), timeout]);
  } catch (error) {
    throw toResolveError(host, error);
  } finally {
    clearTimeout(timer);
  }
  if (answers.length === 0) {
    throw new ResolveError('not_found', `DNS lookup of ${JSON.stringify(host)} returned no addresses`);
  }
  return answers;
}

/**
 * Resolve and vet. Fails closed: if ANY answer is refused the destination is refused, because a mix
 * of public and internal addresses is how rebinding attacks hedge, and the client cannot choose which
 * one we dial. Otherwise the first answer (resolver order) is the one to dial.
 */
export async function vetDestination(
  host: string,
  port: number,
  guard: EgressGuard,
  opts: ResolveOptions,
): Promise<VetResult> {
  let answers: ResolvedAddress[];
  try {
    answers = await resolveHost(host, opts);
  } catch (error) {
    return { ok: false, kind: 'lookup_failed', error: toResolveError(host, error) };
  }
  for (const answer of answers) {
    const verdict = guard.check(answer.address, port);
    if (!verdict.ok) return { ok: false, kind: 'egress_refused', refusal: verdict };
  }
  return { ok: true, address: answers[0]! };
}

function toResolveError(host: string, error: unknown): ResolveError {
  if (error instanceof ResolveError) return error;
  const code = errorCode(error);
  const detail = error instanceof Error ? error.message : String(error);
  const kind =
    code === undefined
      ? 'failed'
      : NOT_FOUND_CODES.has(code)
        ? 'not_found'
        : TIMEOUT_CODES.has(code)
          ? 'timeout'
          : 'failed';
  const message =
    kind === 'not_found'
      ? `DNS name ${JSON.stringify(host)} does not exist or has no addresses (${detail})`
      : `DNS lookup of ${JSON.stringify(host)} failed: ${detail}`;
  return new ResolveError(kind, message, code === undefined ? { cause: error } : { code, cause: error });
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  const code = (error as { code: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
