import { createHash, timingSafeEqual } from 'node:crypto';
import type { ProxyCredential } from './config.js';

/**
 * The optional local credential: with it, only processes that know `user:password` (the agent,
 * through its HTTPS_PROXY URL) can use the sidecar, not every process on the machine. HTTP Basic is
 * what every proxy-aware client sends from `http://user:password@host:port`; over loopback or a Unix
 * socket it is not exposed to the network.
 *
 * Returns a checker that is true when the `Proxy-Authorization` header carries the credential;
 * always true when no credential is configured.
 */
export function proxyAuthChecker(
  credential: ProxyCredential | undefined,
): (header: string | undefined) => boolean {
  if (credential === undefined) return () => true;
  // Compare digests, not the strings: equal lengths for timingSafeEqual, and no early exit that
  // would tell a guesser how many leading characters were right.
  const expected = digest(`${credential.user}:${credential.password}`);
  return (header) => {
    const presented = basicCredential(header);
    return presented !== undefined && timingSafeEqual(digest(presented), expected);
  };
}

/** The `user:password` of a `Basic <base64>` header (scheme case-insensitive), or undefined. */
export function basicCredential(header: string | undefined): string | undefined {
  const m = /^basic[ \t]+([A-Za-z0-9+/]+=*)[ \t]*$/i.exec(header ?? '');
  if (m?.[1] === undefined) return undefined;
  return Buffer.from(m[1], 'base64').toString('utf8');
}

/** The challenge sent with 407, so clients that wait for one (Python's urllib) know what to send. */
export const PROXY_AUTH_CHALLENGE = 'Basic realm="agent-gateway-sidecar", charset="UTF-8"';

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
