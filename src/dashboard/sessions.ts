import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Credential, Role } from '../admin/auth.js';

export interface Session {
  readonly role: Role;
  /** The operator's name as given at login (claimed: the token is shared), for the audit trail. */
  readonly name: string;
  /** Sent back by the page in `X-CSRF-Token` with every action; never in a cookie. */
  readonly csrf: string;
  readonly createdAt: number;
  readonly expiresAt: number;
  /** The first characters of the session id's hash: names the session in the audit trail, reveals nothing. */
  readonly tag: string;
}

export interface SessionStoreOptions {
  readonly ttlMs: number;
  /** Sessions kept at most; the oldest is ended when a login would exceed it. */
  readonly maxSessions: number;
  /** `Secure` and the `__Host-` prefix: only when served over TLS (browsers drop Secure cookies on http). */
  readonly secure: boolean;
  readonly now?: () => number;
}

/**
 * Logged-in browsers. The cookie holds a random 256-bit id and nothing else; the store is keyed by its
 * SHA-256, so neither a lookup's timing nor a memory dump of the keys yields a usable cookie. Sessions
 * live in this process only: restarting the dashboard logs everyone out, which is the safe direction.
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  private readonly now: () => number;
  readonly cookieName: string;

  constructor(private readonly options: SessionStoreOptions) {
    this.now = options.now ?? Date.now;
    this.cookieName = options.secure ? '__Host-agd_session' : 'agd_session';
  }

  /** Creates a session; returns the Set-Cookie header value and the session. */
  create(role: Role, name: string): { cookie: string; session: Session } {
    this.expire();
    while (this.sessions.size >= this.options.maxSessions) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    const id = randomBytes(32).toString('base64url');
    const key = digest(id);
    const at = this.now();
    const session: Session = {
      role,
      name,
      csrf: randomBytes(32).toString('base64url'),
      createdAt: at,
      expiresAt: at + this.options.ttlMs,
      tag: key.slice(0, 8),
    };
    this.sessions.set(key, session);
    return { cookie: this.cookie(id, Math.floor(this.options.ttlMs / 1000)), session };
  }

  /** The live session a request's cookie names, if any. */
  of(req: IncomingMessage): Session | undefined {
    const id = cookieValue(req.headers.cookie, this.cookieName);
    if (id === undefined || !/^[A-Za-z0-9_-]{43}$/.test(id)) return undefined;
    const key = digest(id);
    const session = this.sessions.get(key);
    if (session === undefined) return undefined;
    if (session.expiresAt <= this.now()) {
      this.sessions.delete(key);
      return undefined;
    }
    return session;
  }

  /** Whether `session` is still one of this store's, unexpired (not logged out, not evicted). */
  isLive(session: Session): boolean {
    if (session.expiresAt <= this.now()) return false;
    for (const s of this.sessions.values()) if (s === session) return true;
    return false;
  }

  /** Ends the request's session; returns the Set-Cookie header that clears the cookie. */
  end(req: IncomingMessage): string {
    const id = cookieValue(req.headers.cookie, this.cookieName);
    if (id !== undefined) this.sessions.delete(digest(id));
    return this.cookie('', 0);
  }

  get size(): number {
    return this.sessions.size;
  }

  private cookie(value: string, maxAgeS: number): string {
    const secure = this.options.secure ? '; Secure' : '';
    return `${this.cookieName}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure}`;
  }

  private expire(): void {
    const at = this.now();
    for (const [key, s] of this.sessions) if (s.expiresAt <= at) this.sessions.delete(key);
  }
}

/** The credential a session stands for. */
export function sessionCredential(session: Session): Credential {
  return {
    role: session.role,
    via: 'session',
    name: `${session.name} (${session.role} login, session ${session.tag})`,
  };
}

/** Whether `presented` is the session's CSRF token (constant time). */
export function csrfMatches(session: Session, presented: string | undefined): boolean {
  if (presented === undefined) return false;
  const a = Buffer.from(digest(presented), 'hex');
  const b = Buffer.from(digest(session.csrf), 'hex');
  return timingSafeEqual(a, b);
}

/** One cookie's value from a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    if (part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return undefined;
}

function digest(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
