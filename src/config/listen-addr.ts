import { isIPv4, isIPv6 } from 'node:net';

/**
 * `server.listen_addr` parsing, shared by the config loader (to reject a bad value before start) and the
 * server (to get host and port for `listen`). Unlike CONNECT destinations, the port is mandatory (there
 * is no sensible default for a bind) and 0 is allowed (the OS picks a free port, which tests use).
 */
export class ListenAddrError extends Error {
  override name = 'ListenAddrError';
}

export interface ListenAddr {
  /** Host name or IP literal, without brackets. */
  readonly host: string;
  readonly port: number;
}

const PORT = /^[0-9]{1,5}$/;
/** RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, 1–63 chars each. */
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const EXAMPLES = 'e.g. 0.0.0.0:8443, localhost:8443 or [::]:8443';

export function parseListenAddr(text: string): ListenAddr {
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) throw new ListenAddrError(`"${text}" opens '[' without a closing ']' (${EXAMPLES})`);
    const host = text.slice(1, close);
    // Zone ids (fe80::1%eth0) are legitimate for a bind address, and isIPv6 accepts them.
    if (!isIPv6(host)) throw new ListenAddrError(`"${text}": [${host}] is not an IPv6 address`);
    const rest = text.slice(close + 1);
    if (!rest.startsWith(':')) {
      throw new ListenAddrError(`"${text}" needs a port after the ']', as in [${host}]:8443`);
    }
    return { host, port: parsePort(rest.slice(1), text) };
  }
  const cut = text.lastIndexOf(':');
  if (cut < 0) throw new ListenAddrError(`"${text}" has no port; write host:port (${EXAMPLES})`);
  const host = text.slice(0, cut);
  if (host.includes(':')) {
    throw new ListenAddrError(`"${text}": an IPv6 address must be in brackets, as in [::1]:8443`);
  }
  if (host === '') throw new ListenAddrError(`"${text}" has no host before the ':' (${EXAMPLES})`);
  // An all-numeric name such as "1.2.3" is a mistyped IPv4 address, not a host name: refuse it rather
  // than let the resolver guess what was meant.
  if (!isIPv4(host) && (!HOSTNAME.test(host) || /^[0-9.]+$/.test(host))) {
    throw new ListenAddrError(`"${text}": "${host}" is neither a host name nor an IP address`);
  }
  return { host, port: parsePort(text.slice(cut + 1), text) };
}

function parsePort(port: string, text: string): number {
  if (!PORT.test(port) || Number(port) > 65_535) {
    throw new ListenAddrError(`"${text}": port "${port}" must be a number from 0 to 65535`);
  }
  return Number(port);
}
