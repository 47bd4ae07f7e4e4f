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
import { permits, type Role } from './auth.js';
import { AdminRequestError, sendError } from './http-json.js';

/** One request as a route sees it: who asked (their role and address) and what. */
export interface AdminContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly role: Role | undefined;
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
  handle(ctx: AdminContext): void | Promise<void>;
}

export interface AdminServerOptions {
  readonly host: string;
  readonly port: number;
  /** SO_REUSEPORT, as the agents' listener (server.reuse_port): a rolling restart needs both ports. */
  readonly reusePort: boolean;
  /** Certificate and key; absent: plain HTTP (the config allows that on loopback only). */
  readonly tls?: TlsMaterial;
  /** The role a request carries (bearer token; the dashboard adds its session cookie). */
  readonly authenticate: (req: IncomingMessage) => Role | undefined;
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
  private tls: TlsMaterial | undefined;
  readonly server: Server;

  constructor(private readonly options: AdminServerOptions) {
    this.tls = options.tls;
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.dispatch(req, res);
    const common = { requestTimeout: 30_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 };
    this.server =
      options.tls === undefined
        ? createHttpServer(common, handler)
        : createHttpsServer({ ...common, ...adminContextOptions(options.tls) }, handler);
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
    (this.server as unknown as TlsServer).setSecureContext(adminContextOptions(material));
    this.tls = material;
  }

  add(...routes: AdminRoute[]): void {
    this.routes.push(...routes);
  }

  listen(): Promise<AddressInfo> {
    const { host, port, reusePort } = this.options;
    return listenOn(this.server, { host, port, reusePort });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const path = url.pathname;
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
      const role = this.options.authenticate(req);
      if (route.access !== 'public' && !permits(role, route.access)) {
        if (role === undefined) {
          sendError(res, new AdminRequestError('ADMIN_UNAUTHORIZED', 'send Authorization: Bearer <token>'), {
            'www-authenticate': 'Bearer realm="agent-gateway admin"',
          });
          return;
        }
        throw new AdminRequestError(
          'ADMIN_FORBIDDEN',
          `this needs the ${route.access} role; the token given is ${role}`,
        );
      }
      const peer = formatPeer(req.socket.remoteAddress, req.socket.remotePort);
      await route.handle({ req, res, url, role, peer });
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

function adminContextOptions(material: TlsMaterial) {
  return { cert: material.certPem, key: material.keyPem, minVersion: 'TLSv1.2' } as const;
}

function methods(routes: readonly AdminRoute[]): string {
  return [...new Set(routes.map((r) => r.method))].join(', ');
}
