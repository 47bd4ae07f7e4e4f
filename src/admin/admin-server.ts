import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Server as TlsServer } from 'node:tls';
import type { TlsMaterial } from '../config/tls-material.js';
import { formatPeer } from '../proxy/connection-info.js';
import { listenOn } from '../proxy/listen.js';
import { type Credential, permits, type Role } from './auth.js';
import { AdminRequestError, sendError } from './http-json.js';

/** One request as a route sees it: who asked (their role and address) and what. */
export interface AdminContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly role: Role | undefined;
  /** The whole credential (its role, how it was presented, a name for the audit trail). */
  readonly credential: Credential | undefined;
  /** `ip:port` of the operator's client, for the audit trail. */
  readonly peer: string;
}

export interface AdminRoute {
  readonly method: 'GET' | 'POST';
  /** Exact path, or a prefix ending in `/` when `prefix` is set (static files). */
  readonly path: string;
  readonly prefix?: boolean;
  /** `public`: no credential (health and readiness probes, the login page); otherwise the role needed. */
  readonly access: Role | 'public';
  /** A page for browsers: without a credential, redirect to `loginPath` instead of answering JSON 401. */
  readonly page?: boolean;
  handle(ctx: AdminContext): void | Promise<void>;
}

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  /** SO_REUSEPORT, as the agents' listener (server.reuse_port): a rolling restart needs both ports. */
  readonly reusePort?: boolean;
  /** Certificate and key; absent: plain HTTP (the config allows that on loopback only). */
  readonly tls?: TlsMaterial & {
    /** Ask for a client certificate (none is required and no CA is trusted: `authenticate` decides). */
    readonly requestCert?: boolean;
  };
  /** The credential a request carries (a bearer token; for the dashboard also its session cookie). */
  readonly authenticate: (req: IncomingMessage) => Credential | undefined;
  /** Where {@link AdminRoute.page} routes send a browser without a credential. */
  readonly loginPath?: string;
  /** Set on every answer before any route runs (the dashboard's Content-Security-Policy and friends). */
  readonly responseHeaders?: Readonly<Record<string, string>>;
  /** An unexpected failure inside a route (the answer is a 500 with a code, never a crash). */
  readonly onError: (error: unknown, route: string) => void;
}

/**
 * The operators' listener, never the agents' port: a small fixed route table over node:http, because the
 * API is a handful of JSON endpoints and every byte of a framework would be attack surface for nothing.
 * Routes come from the features that need them (tunnels, health, metrics, the dashboard); each declares
 * the role it needs, which is checked here, once, before any route code runs.
 */
export class AdminServer {
  private readonly routes: AdminRoute[] = [];
  private readonly closing: Array<() => void> = [];
  private tls: TlsMaterial | undefined;
  readonly server: Server;

  constructor(private readonly options: AdminServerOptions) {
    this.tls = options.tls;
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.dispatch(req, res);
    const common = { requestTimeout: 30_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 };
    this.server =
      options.tls === undefined
        ? createHttpServer(common, handler)
        : createHttpsServer({ ...common, ...this.contextOptions(options.tls) }, handler);
    // A browser tab or a scraper needs a few connections; the cap keeps a local client from exhausting fds.
    this.server.maxConnections = 256;
  }

  /** The certificate new TLS handshakes get; undefined for plain HTTP. */
  get certificate(): TlsMaterial | undefined {
    return this.tls;
  }

  /** SIGHUP: new handshakes get this certificate and key; open connections keep theirs. */
  setCertificate(material: TlsMaterial): void {
    if (this.tls === undefined) throw new Error('the admin listener runs without TLS');
    // The same context options as at start (see the constructor): setSecureContext keeps nothing else.
    (this.server as unknown as TlsServer).setSecureContext(this.contextOptions(material));
    this.tls = material;
  }

  private contextOptions(material: TlsMaterial) {
    return {
      cert: material.certPem,
      key: material.keyPem,
      minVersion: 'TLSv1.2',
      ...(this.options.tls?.requestCert === true ? { requestCert: true, rejectUnauthorized: false } : {}),
    } as const;
  }

  add(...routes: AdminRoute[]): void {
    this.routes.push(...routes);
  }

  /** Runs `fn` when the server closes (a feature's timers and streams). */
  onClose(fn: () => void): void {
    this.closing.push(fn);
  }

  listen(): Promise<AddressInfo> {
    const { host, port, reusePort } = this.options;
    return listenOn(this.server, { host, port, reusePort: reusePort === true });
  }

  close(): Promise<void> {
    for (const fn of this.closing.splice(0)) fn();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const path = url.pathname;
    for (const [name, value] of Object.entries(this.options.responseHeaders ?? {}))
      res.setHeader(name, value);
    const onPath = this.routes.filter((r) => (r.prefix ? path.startsWith(r.path) : path === r.path));
    try {
      if (onPath.length === 0)
        throw new AdminRequestError('ADMIN_NOT_FOUND', `no such endpoint: ${path.slice(0, 200)}`);
      const route = onPath.find(
        (r) => r.method === req.method || (r.method === 'GET' && req.method === 'HEAD'),
      );
      if (route === undefined) {
        throw new AdminRequestError(
          'ADMIN_METHOD_NOT_ALLOWED',
          `${path.slice(0, 200)} answers ${methods(onPath)}`,
        );
      }
      const credential = this.options.authenticate(req);
      const role = credential?.role;
      if (route.access !== 'public' && !permits(role, route.access)) {
        if (role === undefined && route.page === true && this.options.loginPath !== undefined) {
          res.writeHead(303, { location: this.options.loginPath, 'cache-control': 'no-store' });
          res.end();
          return;
        }
        if (role === undefined) {
          sendError(res, new AdminRequestError('ADMIN_UNAUTHORIZED', 'send Authorization: Bearer <token>'), {
            'www-authenticate': 'Bearer realm="agent-gateway admin"',
          });
          return;
        }
        throw new AdminRequestError(
          'ADMIN_FORBIDDEN',
          `this needs the ${route.access} role; the credential given is ${role}`,
        );
      }
      const peer = formatPeer(req.socket.remoteAddress, req.socket.remotePort);
      await route.handle({ req, res, url, role, credential, peer });
    } catch (error) {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (error instanceof AdminRequestError) {
        sendError(res, error);
        return;
      }
      this.options.onError(error, path);
      sendError(res, new AdminRequestError('ADMIN_INTERNAL', 'internal error; see the gateway log'));
    }
  }
}

function methods(routes: readonly AdminRoute[]): string {
  return [...new Set(routes.map((r) => r.method))].join(', ');
}
