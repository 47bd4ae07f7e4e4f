import { isIP, type LookupFunction, type NetConnectOpts, connect as netConnect, type Socket } from 'node:net';
import type { ResolvedAddress } from './resolve.js';

/**
 * Open the upstream TCP connection to an address the egress guard has already vetted. The address is
 * an IP literal, so Node connects without a lookup; the lookup hook below makes any attempt at one an
 * error instead of a silent second resolution.
 */
export type DialErrorKind = 'timeout' | 'refused' | 'unreachable' | 'failed';

export class DialError extends Error {
  override name = 'DialError';
  readonly kind: DialErrorKind;
  /** The socket error code (e.g. 'ECONNREFUSED') when there was one. */
  readonly code?: string;

  constructor(kind: DialErrorKind, message: string, options?: { code?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    if (options?.code !== undefined) this.code = options.code;
  }
}

/** Seam for tests: lets the timeout path run without sending a packet anywhere. */
export interface DialDeps {
  connect?: (options: NetConnectOpts) => Socket;
}

const KIND_BY_CODE: Readonly<Record<string, DialErrorKind>> = {
  ECONNREFUSED: 'refused',
  EHOSTUNREACH: 'unreachable',
  ENETUNREACH: 'unreachable',
  EHOSTDOWN: 'unreachable',
  ENETDOWN: 'unreachable',
  EADDRNOTAVAIL: 'unreachable',
  ETIMEDOUT: 'timeout',
};

const refuseLookup: LookupFunction = (hostname, _options, callback) => {
  callback(
    new Error(
      `refusing a DNS lookup of ${JSON.stringify(hostname)} while dialling: only vetted IP literals are dialled`,
    ),
    '',
  );
};

export function dialVetted(
  address: ResolvedAddress,
  port: number,
  timeoutMs: number,
  deps: DialDeps = {},
): Promise<Socket> {
  const target = `${address.family === 6 ? `[${address.address}]` : address.address}:${port}`;
  if (isIP(address.address) !== address.family || address.address.includes('%')) {
    return Promise.reject(
      new DialError(
        'failed',
        `cannot dial ${target}: ${JSON.stringify(address.address)} is not an IPv${address.family} literal`,
      ),
    );
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return Promise.reject(
      new DialError('failed', `cannot dial ${address.address}: port ${port} is not 1-65535`),
    );
  }
  if (!(timeoutMs > 0)) {
    return Promise.reject(
      new DialError('failed', `cannot dial ${target}: timeout ${timeoutMs} ms must be positive`),
    );
  }

  const connect = deps.connect ?? netConnect;
  return new Promise<Socket>((resolve, reject) => {
    const socket = connect({
      host: address.address,
      family: address.family,
      port,
      // Tunnels half-close: the upstream's FIN must not end our side before the client's data is sent.
      allowHalfOpen: true,
      lookup: refuseLookup,
    });
    socket.setNoDelay(true);

    const settle = (): void => {
      clearTimeout(timer);
      socket.off('connect', onConnect);
      socket.off('error', onError);
    };
    const fail = (error: DialError): void => {
      settle();
      // The socket is abandoned: keep a late 'error' (emitted while it tears down) from crashing the process.
      socket.on('error', ignore);
      socket.destroy();
      reject(error);
    };
    const onConnect = (): void => {
      settle();
      resolve(socket);
    };
    const onError = (error: Error): void => {
      const code = (error as NodeJS.ErrnoException).code;
      const kind = (code !== undefined && KIND_BY_CODE[code]) || 'failed';
      fail(
        new DialError(kind, `TCP connect to ${target} failed: ${error.message}`, {
          ...(code === undefined ? {} : { code }),
          cause: error,
        }),
      );
    };
    const timer = setTimeout(() => {
      fail(new DialError('timeout', `TCP connect to ${target} did not complete within ${timeoutMs} ms`));
    }, timeoutMs);

    socket.once('connect', onConnect);
    socket.once('error', onError);
  });
}

function ignore(): void {}
