import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AdminRoute } from '../admin/admin-server.js';

/** The built front end (web/, built by `npm run build` into dist/web/). */
export const WEB_ROOT = fileURLToPath(new URL('../web/', import.meta.url));

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
};

/** Where login.html shows why the browser is there again (fixed texts only: nothing from the request). */
const MESSAGE_MARK = '<!--login-message-->';
const MESSAGES: Record<string, string> = {
  failed: 'That token was not accepted.',
  expired: 'Your session ended. Log in again.',
  out: 'You are logged out.',
};

export class WebBuildMissingError extends Error {
  override name = 'WebBuildMissingError';
}

/**
 * The pages and their assets, read from disk once at start into memory: only files that exist in the
 * build are ever served (no path from a request touches the file system). The login page and the files it
 * references are public; the app and every other asset need a login (AdminServer redirects a browser
 * without one to /login).
 */
export async function staticRoutes(root = WEB_ROOT): Promise<AdminRoute[]> {
  let index: Buffer;
  let login: string;
  let assets: string[];
  try {
    index = await readFile(join(root, 'index.html'));
    login = await readFile(join(root, 'login.html'), 'utf8');
    assets = await readdir(join(root, 'assets'));
  } catch (error) {
    throw new WebBuildMissingError(
      `the dashboard's web files are missing in ${root} (${(error as Error).message}): run \`npm run build\` ` +
        '(npm ci runs it) to build them',
    );
  }
  const files = new Map<string, Buffer>();
  for (const name of assets) files.set(`/assets/${name}`, await readFile(join(root, 'assets', name)));
  const publicAssets = new Set(
    [...login.matchAll(/(?:href|src)="(\/assets\/[^"]+)"/g)].map((m) => m[1] ?? ''),
  );

  const serve =
    (path: string, body: Buffer): AdminRoute['handle'] =>
    ({ res }) => {
      res.writeHead(200, {
        'content-type': TYPES[extname(path)] ?? 'application/octet-stream',
        'content-length': body.length,
        // Hashed names never change content; pages are per-login and must not be cached.
        'cache-control': path.startsWith('/assets/') ? 'private, max-age=31536000, immutable' : 'no-store',
      });
      res.end(body);
    };
  const routes: AdminRoute[] = [
    { method: 'GET', path: '/', access: 'read', page: true, handle: serve('/index.html', index) },
    {
      method: 'GET',
      path: '/login',
      access: 'public',
      handle: (ctx) => {
        const key = [...ctx.url.searchParams.keys()].find((k) => k in MESSAGES);
        const message = key === undefined ? '' : `<p class="login-message" role="alert">${MESSAGES[key]}</p>`;
        serve('/login.html', Buffer.from(login.replace(MESSAGE_MARK, message)))(ctx);
      },
    },
  ];
  for (const [path, body] of files) {
    routes.push({
      method: 'GET',
      path,
      access: publicAssets.has(path) ? 'public' : 'read',
      handle: serve(path, body),
    });
  }
  return routes;
}

/**
 * Headers on every answer of the dashboard: scripts and styles from this origin only (no inline script,
 * no third party), no framing (clickjacking), no referrer to other sites, no sniffing, a window of its own.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Not no-referrer: with it, browsers send `Origin: null` on the login form's POST, and the origin check
  // (auth-routes.ts sameOrigin) could no longer tell this site's form from another's.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), usb=()',
};
