import assert from 'node:assert/strict';
import type { ClientHttp2Stream } from 'node:http2';
import type { Duplex } from 'node:stream';
import type postgres from 'postgres';
import { type ClientTls, h2Connect, h2Session, http1Connect, roundTrip } from './clients.js';
import type { GatewayProcess, LogLine } from './gateway-process.js';
import type { TestPki } from './pki.js';
import { createPrincipal, grantPermission, grantScope, type Principal } from './registry-rows.js';

/** A permission of its own (principal, scope, agent): nothing shared between tests. */
export interface Granted {
  readonly permissionId: string;
  readonly principal: Principal;
  readonly identity: string;
  readonly tls: ClientTls;
}

export interface OpenPair {
  readonly h1: Duplex;
  readonly h2: ClientHttp2Stream;
}

/**
 * Open tunnels over both protocols to one echo destination, and the assertions the live-authorization
 * tests make about how they end. `gateway()` is read on every call, since some tests replace the gateway.
 */
export class LiveTunnels {
  private counter = 0;

  constructor(
    private readonly pki: TestPki,
    private readonly sql: () => postgres.Sql,
    readonly destination: string,
    private readonly gateway: () => GatewayProcess,
    private readonly prefix = 'live',
  ) {}

  async granted(window: { notBeforeSql?: string; notAfterSql?: string } = {}): Promise<Granted> {
    const n = ++this.counter;
    const sql = this.sql();
    const principal = await createPrincipal(sql, `org-${this.prefix}-${n}`);
    await grantScope(sql, principal.keyId, this.destination);
    const identity = `agent-${this.prefix}-${n}`;
    const agent = await this.pki.agent(identity);
    const permissionId = `perm-${this.prefix}-${n}`;
    await grantPermission(sql, {
      permissionId,
      principal,
      identity,
      agentSpki: agent.spkiDer,
      destination: this.destination,
      ...window,
    });
    return { permissionId, principal, identity, tls: { caPath: this.pki.caCertPath, agent } };
  }

  /** An open, working tunnel over each protocol for `g`. */
  async openBoth(g: Granted): Promise<OpenPair> {
    const port = this.gateway().port;
    const one = await http1Connect(port, g.tls, this.destination);
    assert.equal(one.status, 200);
    assert.equal(one.rest.length, 0);
    await echoes(one.socket);
    const session = await h2Session(port, g.tls);
    const two = await h2Connect(session, this.destination);
    assert.equal(two.status, 200);
    await echoes(two.stream);
    // The session ends with the test's tunnel.
    two.stream.once('close', () => session.close());
    return { h1: one.socket, h2: two.stream };
  }

  /**
   * Both tunnels close, and both `tunnel closed` lines name `cause` and a reason matching `reason`. Lines
   * logged before `sinceLine` (an index into the gateway's log) are not considered.
   */
  async expectClosed(
    g: Granted,
    tunnels: OpenPair,
    cause: string,
    reason: RegExp,
    sinceLine = 0,
  ): Promise<LogLine[]> {
    await Promise.all([closed(tunnels.h1), closed(tunnels.h2)]);
    const gateway = this.gateway();
    const lines: LogLine[] = [];
    for (const protocol of ['HTTP/1.1', 'HTTP/2']) {
      lines.push(
        await gateway.waitForLog(
          (l) =>
            l.msg === 'tunnel closed' &&
            l['permission_id'] === g.permissionId &&
            l['protocol'] === protocol &&
            gateway.logs.indexOf(l) >= sinceLine,
          `tunnel closed for ${g.permissionId} over ${protocol}`,
        ),
      );
    }
    for (const line of lines) {
      assert.equal(line['close_cause'], cause, JSON.stringify(line));
      assert.match(String(line['close_reason']), reason);
      assert.equal(line['level'], cause === 'revoked' || cause === 'revalidation_failed' ? 'warn' : 'info');
    }
    return lines;
  }
}

/** Resolves once `stream` has closed. */
export function closed(stream: Duplex): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed) resolve();
    stream.once('close', () => resolve());
    stream.on('error', () => {});
  });
}

/** One byte there and back: the tunnel carries data. */
export async function echoes(stream: Duplex): Promise<void> {
  assert.equal(await roundTrip(stream, 'p'), 'p');
}
