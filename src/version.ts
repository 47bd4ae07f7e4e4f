import { readFileSync } from 'node:fs';

/**
 * The version of this agent-gateway, read from the package's own package.json at run time, so that the
 * number printed is the one of the code that runs (never a constant someone forgot to bump). This module
 * sits at the top of `src/` (and of `dist/`): the package root is one directory up in both trees.
 */
const PACKAGE_JSON = new URL('../package.json', import.meta.url);

let cached: string | undefined;

export function packageVersion(): string {
  cached ??= readVersion();
  return cached;
}

function readVersion(): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8'));
  } catch (err) {
    throw new Error(
      `cannot read the agent-gateway version from ${PACKAGE_JSON.pathname}: ${(err as Error).message} ` +
        '(is the package installed completely?)',
    );
  }
  const version = (parsed as { version?: unknown } | null)?.version;
  if (typeof version !== 'string' || version === '') {
    throw new Error(
      `${PACKAGE_JSON.pathname} has no "version" string (is the package installed completely?)`,
    );
  }
  return version;
}

/**
 * The versions the `listening` lines name: this package's, and the runtime's (Node, and the OpenSSL it
 * was built with, which does the TLS). Read from the running process, so they say what actually runs.
 */
export function runningVersions(): { version: string; node_version: string; openssl_version: string } {
  return {
    version: packageVersion(),
    node_version: process.versions.node,
    openssl_version: process.versions.openssl,
  };
}
