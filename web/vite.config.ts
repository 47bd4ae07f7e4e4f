import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

/**
 * The dashboard's front end, built by `npm run build` (which `npm ci` runs through `prepare`) into
 * dist/web/, where `agent-gateway dashboard` serves it from disk. Two pages: the app, and a login page
 * that is a plain form without script. Everything is bundled: no CDN, nothing fetched at run time.
 */
export default defineConfig({
  root: here('.'),
  base: '/',
  publicDir: false,
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: here('../dist/web'),
    emptyOutDir: true,
    // No inlined assets: the Content-Security-Policy allows scripts and styles from this origin only.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    rollupOptions: { input: { index: here('index.html'), login: here('login.html') } },
  },
});
