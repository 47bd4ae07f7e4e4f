import { createHash, timingSafeEqual } from 'node:crypto';
import type { AdminTokens } from '../config/admin-settings.js';

/** What a credential may do: `read` looks (tunnels, metrics, pages), `admin` also acts (close, revoke). */
export type Role = 'read' | 'admin';

/** Who is asking, as the audit trail names them. */
export interface Credential {
  readonly role: Role;
  /** How it was presented: a bearer token, a dashboard session (cookie), an operator certificate. */
  readonly via: 'token' | 'session' | 'certificate';
  /** A name for the audit trail, e.g. `admin token` or the operator's name given at login. */
  readonly name: string;
}

/** The credential of a bearer token's role. */
export function tokenCredential(role: Role | undefined): Credential | undefined {
  return role === undefined ? undefined : { role, via: 'token', name: `${role} token` };
}

/**
 * The role a request's `Authorization: Bearer <token>` grants, or undefined. Tokens are compared as
 * SHA-256 digests with timingSafeEqual, so neither their length nor a matching prefix shows in the time
 * an answer takes.
 */
export class TokenAuthority {
  readonly #admin: Buffer;
  readonly #readonly: Buffer | undefined;

  constructor(tokens: AdminTokens) {
    this.#admin = digest(tokens.admin);
    this.#readonly = tokens.readonly === undefined ? undefined : digest(tokens.readonly);
  }

  /** The role of a bearer token given as the whole header value (`Bearer …`) or as the bare token. */
  roleOf(authorization: string | undefined): Role | undefined {
    const token = bearer(authorization);
    if (token === undefined) return undefined;
    return this.roleOfToken(token);
  }

  roleOfToken(token: string): Role | undefined {
    const presented = digest(token);
    // Both comparisons always run: which one matched must not show in the timing either.
    const isAdmin = timingSafeEqual(presented, this.#admin);
    const isRead = this.#readonly !== undefined && timingSafeEqual(presented, this.#readonly);
    return isAdmin ? 'admin' : isRead ? 'read' : undefined;
  }
}

/** Whether `role` may do what `needed` asks. */
export function permits(role: Role | undefined, needed: Role): boolean {
  return role === 'admin' || (role === 'read' && needed === 'read');
}

function bearer(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header);
  return m?.[1];
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}
