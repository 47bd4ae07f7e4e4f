import type { ClientHttp2Session } from 'node:http2';
import {
  type AgentEndpoint,
  http1Tunnel,
  http2Session,
  http2Tunnel,
  type OpenedTunnel,
  TunnelRefused,
} from './clients.js';

/** What a strategy runs with: where to go, when to stop, and the books of what it opened. */
export class StrategyRun {
  opened = 0;
  refused = 0;
  failed = 0;
  private readonly tunnels = new Set<OpenedTunnel>();
  private readonly sessions = new Set<ClientHttp2Session>();
  private ended = false;
  private onStop: () => void = () => {};
  /** One promise for every waiter, so thousands of short tunnels do not pile up listeners. */
  private readonly stopping = new Promise<void>((resolve) => {
    this.onStop = resolve;
  });

  constructor(
    readonly endpoint: AgentEndpoint,
    readonly authority: string,
  ) {}

  get stopped(): boolean {
    return this.ended;
  }

  /** Resolves once stop() was called. */
  whenStopped(): Promise<void> {
    return this.stopping;
  }

  /** Waits `ms`, or less if the run stops first. */
  pause(ms: number): Promise<void> {
    return Promise.race([new Promise<void>((r) => setTimeout(r, ms).unref()), this.whenStopped()]);
  }

  /** Opens a tunnel (counted; refusals and failures too); undefined when none was opened. */
  async open(open: () => Promise<OpenedTunnel>): Promise<OpenedTunnel | undefined> {
    try {
      const tunnel = await open();
      this.opened++;
      if (this.ended) {
        tunnel.reset();
        return undefined;
      }
      this.tunnels.add(tunnel);
      return tunnel;
    } catch (err) {
      if (err instanceof TunnelRefused) this.refused++;
      else this.failed++;
      // A refusal (the tunnel cap, a spent quota) is not a reason to spin: back off a little.
      await this.pause(50);
      return undefined;
    }
  }

  forget(tunnel: OpenedTunnel): void {
    this.tunnels.delete(tunnel);
  }

  async session(): Promise<ClientHttp2Session> {
    const session = await http2Session(this.endpoint);
    this.sessions.add(session);
    if (this.ended) session.destroy();
    return session;
  }

  /** Time is up: every tunnel is reset (unsent bytes are dropped, not drained) and every session closed. */
  stop(): void {
    if (this.ended) return;
    this.ended = true;
    for (const t of this.tunnels) t.reset();
    for (const s of this.sessions) s.destroy();
    this.tunnels.clear();
    this.sessions.clear();
    this.onStop();
  }
}

export interface Strategy {
  readonly name: string;
  readonly what: string;
  run(run: StrategyRun): Promise<void>;
}

const BLOCK = Buffer.alloc(64 * 1024, 0x78);

/** Writes blocks as fast as the tunnel takes them (its flow control is the gateway's pace) until stopped. */
function pump(run: StrategyRun, tunnel: OpenedTunnel, limitBytes = Number.POSITIVE_INFINITY): Promise<void> {
  return new Promise((resolve) => {
    const { stream } = tunnel;
    let sent = 0;
    const finish = (): void => {
      stream.off('drain', write);
      resolve();
    };
    const write = (): void => {
      while (!run.stopped && sent < limitBytes) {
        const n = Math.min(BLOCK.length, limitBytes - sent);
        sent += n;
        if (!stream.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
          stream.once('drain', write);
          return;
        }
      }
      finish();
    };
    stream.once('close', finish);
    stream.once('error', finish);
    void run.whenStopped().then(finish);
    write();
  });
}

/** Resolves when the tunnel is closed by the far side (after a half-close), or the run stops. */
function closed(run: StrategyRun, tunnel: OpenedTunnel): Promise<void> {
  return Promise.race([
    new Promise<void>((resolve) => {
      tunnel.stream.once('close', () => resolve());
      tunnel.stream.once('end', () => resolve());
      tunnel.stream.once('error', () => resolve());
    }),
    run.whenStopped(),
  ]);
}

type Opener = (run: StrategyRun) => Promise<() => Promise<OpenedTunnel>>;

/** Every tunnel its own TLS connection (HTTP/1.1). */
const h1: Opener = async (run) => () => http1Tunnel(run.endpoint, run.authority);

/** Streams spread over `connections` HTTP/2 connections, round robin. */
function h2(connections: number): Opener {
  return async (run) => {
    const sessions = await Promise.all(Array.from({ length: connections }, () => run.session()));
    let next = 0;
    return () => http2Tunnel(sessions[next++ % sessions.length]!, run.authority);
  };
}

/** `n` tunnels that all send as fast as they can, for the whole run. */
function parallel(n: number, opener: Opener): Strategy['run'] {
  return async (run) => {
    const open = await opener(run);
    const tunnels = await Promise.all(Array.from({ length: n }, () => run.open(open)));
    await Promise.all(tunnels.map((t) => (t === undefined ? undefined : pump(run, t))));
  };
}

/** `loops` loops, each opening a tunnel, sending `bytes`, then handling it as `finish` says, again and again. */
function loop(
  loops: number,
  opener: Opener,
  bytes: number,
  finish: (run: StrategyRun, tunnel: OpenedTunnel) => Promise<void>,
): Strategy['run'] {
  return async (run) => {
    const open = await opener(run);
    await Promise.all(
      Array.from({ length: loops }, async () => {
        while (!run.stopped) {
          const tunnel = await run.open(open);
          if (tunnel === undefined) continue;
          await pump(run, tunnel, bytes);
          await finish(run, tunnel);
          run.forget(tunnel);
        }
      }),
    );
  };
}

/** Ends the client's side and waits for the far end to close: the tunnel stays half-open meanwhile. */
async function halfClose(run: StrategyRun, tunnel: OpenedTunnel): Promise<void> {
  tunnel.stream.end();
  await closed(run, tunnel);
}

async function closeAtOnce(_run: StrategyRun, tunnel: OpenedTunnel): Promise<void> {
  tunnel.stream.end();
}

async function resetAtOnce(_run: StrategyRun, tunnel: OpenedTunnel): Promise<void> {
  tunnel.reset();
}

/** New TLS connections whose bytes ride in the same write as the CONNECT head, before the 200. */
function pipelined(loops: number): Strategy['run'] {
  return async (run) => {
    await Promise.all(
      Array.from({ length: loops }, async () => {
        while (!run.stopped) {
          const tunnel = await run.open(() => http1Tunnel(run.endpoint, run.authority, BLOCK));
          if (tunnel === undefined) continue;
          tunnel.stream.end();
          await closed(run, tunnel);
          run.forget(tunnel);
        }
      }),
    );
  };
}

/**
 * The splitting strategies an agent with one identity can use (issue 13, section 4), each with the bytes
 * bounded by the gateway alone: any number of tunnels, both protocols, one or many TLS connections,
 * tunnels opened and closed in a loop, bytes pipelined before the 200, half-closed tunnels, reconnects.
 */
export const STRATEGIES: readonly Strategy[] = [
  { name: 'h1-1', what: '1 HTTP/1.1 tunnel', run: parallel(1, h1) },
  { name: 'h1-16', what: '16 HTTP/1.1 tunnels, 16 TLS connections', run: parallel(16, h1) },
  { name: 'h1-64', what: '64 HTTP/1.1 tunnels, 64 TLS connections', run: parallel(64, h1) },
  { name: 'h2-1', what: '1 HTTP/2 stream', run: parallel(1, h2(1)) },
  { name: 'h2-16', what: '16 HTTP/2 streams on one TLS connection', run: parallel(16, h2(1)) },
  { name: 'h2-64', what: '64 HTTP/2 streams on one TLS connection', run: parallel(64, h2(1)) },
  { name: 'h2-64x8', what: '64 HTTP/2 streams over 8 TLS connections', run: parallel(64, h2(8)) },
  {
    name: 'h1-churn',
    what: 'HTTP/1.1 tunnels opened, sent 64 KiB and closed in a loop (8 loops)',
    run: loop(8, h1, 64 * 1024, closeAtOnce),
  },
  {
    name: 'h2-churn',
    what: 'HTTP/2 streams opened, sent 64 KiB and closed in a loop (16 loops, one connection)',
    run: loop(16, h2(1), 64 * 1024, closeAtOnce),
  },
  {
    name: 'h1-pipelined',
    what: '64 KiB pipelined into the CONNECT request before the 200, new TLS connection each (8 loops)',
    run: pipelined(8),
  },
  {
    name: 'h1-half-closed',
    what: 'HTTP/1.1 tunnels that send 256 KiB, half-close and wait (16 loops)',
    run: loop(16, h1, 256 * 1024, halfClose),
  },
  {
    name: 'h2-half-closed',
    what: 'HTTP/2 streams that send 256 KiB, half-close and wait (32 loops, one connection)',
    run: loop(32, h2(1), 256 * 1024, halfClose),
  },
  {
    name: 'h1-reconnect',
    what: 'HTTP/1.1 tunnels reset after 256 KiB and reconnected at once (16 loops)',
    run: loop(16, h1, 256 * 1024, resetAtOnce),
  },
  {
    name: 'h2-reconnect',
    what: 'HTTP/2 streams reset after 256 KiB and reopened at once (32 loops, 4 connections)',
    run: loop(32, h2(4), 256 * 1024, resetAtOnce),
  },
];
