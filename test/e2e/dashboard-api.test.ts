import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createParser } from 'eventsource-parser';
import { http1Connect } from '../helpers/clients.js';
import {
  type DashboardProcess,
  type DashboardRole,
  dashboardRole,
  startDashboardProcess,
  writeDashboardConfig,
} from '../helpers/dashboard-process.js';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { type GatewayProcess, startGatewayProcess, writeGatewayConfig } from '../helpers/gateway-process.js';
import { closed, echoes, LiveTunnels } from '../helpers/live-tunnels.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';

/**
 * Issue 15 without a browser: the gateway's event feed (`/v1/events`: history first, then live, resumable)
 * and its limits (`/v1/limits`); one dashboard over two gateways, neither special (tunnels of both, a
 * close-all that reaches both, and a gateway whose token is read-only refusing honestly); OTLP/HTTP JSON
 * ingest with gzip, behind its own token.
 */
const ADMIN_A = 'a'.repeat(32);
const ADMIN_B = 'b'.repeat(32);
const READ_B = 'c'.repeat(32);
const DASH = 'dashboard-admin-token-0123456789';
const INGEST = 'dashboard-ingest-token-0123456789';

let pki: TestPki;
let db: FreshDatabase;
let role: DashboardRole;
let a: GatewayProcess;
let b: GatewayProcess;
let adminA: string;
let dashboard: DashboardProcess;
let echo: Awaited<ReturnType<typeof startEchoServer>>;
let onA: LiveTunnels;
let onB: LiveTunnels;

async function gatewayWith(token: string, readToken?: string, extra = ''): Promise<[GatewayProcess, string]> {
  const g = await startGatewayProcess(
    await writeGatewayConfig({
      dir: pki.dir,
      databaseUrl: db.url,
      certPath: pki.serverCertPath,
      keyPath: pki.serverKeyPath,
      extraTables: `${extra}\n[admin]\nlisten_addr = "127.0.0.1:0"\n${readToken ? 'readonly_token_env = "TEST_READ"' : ''}`,
    }),
    { AGENT_GATEWAY_ADMIN_TOKEN: token, ...(readToken ? { TEST_READ: readToken } : {}) },
  );
  const line = await g.waitForLog((l) => l.msg === 'admin listening');
  return [g, `http://${String(line['admin_addr'])}`];
}

before(async () => {
  pki = await createTestPki();
  db = await freshDatabase();
  role = await dashboardRole(db);
  echo = await startEchoServer();
  [a, adminA] = await gatewayWith(
    ADMIN_A,
    undefined,
    '[rate_limit]\nbytes_per_second = 1048576\n[rate_limit.identities."agent-slow"]\nbytes_per_second = 65536',
  );
  const [gb, adminB] = await gatewayWith(ADMIN_B, READ_B);
  b = gb;
  dashboard = await startDashboardProcess(
    await writeDashboardConfig({
      dir: pki.dir,
      databaseUrl: role.url,
      gateways: [
        { name: 'gw-a', adminUrl: adminA, tokenEnv: 'TEST_GW_A' },
        // The dashboard holds only gw-b's read-only token: it can watch gw-b, not close there.
        { name: 'gw-b', adminUrl: adminB, tokenEnv: 'TEST_GW_B' },
      ],
    }),
    {
      TEST_DASHBOARD_TOKEN: DASH,
      TEST_DASHBOARD_READ_TOKEN: 'dashboard-read-token-0123456789ab',
      TEST_DASHBOARD_INGEST_TOKEN: INGEST,
      TEST_GW_A: ADMIN_A,
      TEST_GW_B: READ_B,
    },
  );
  const destination = `127.0.0.1:${echo.port}`;
  onA = new LiveTunnels(
    pki,
    () => db.sql,
    destination,
    () => a,
    'api',
  );
  onB = new LiveTunnels(
    pki,
    () => db.sql,
    destination,
    () => b,
    'api',
  );
});

after(async () => {
  await dashboard?.stop();
  await a?.stop();
  await b?.stop();
  await echo?.close();
  await role?.drop();
  await db?.drop();
  await pki?.cleanup();
});

interface SseEvent {
  event: string | undefined;
  id: string | undefined;
  data: string;
}

/** Reads an event stream until `done` says so (bounded by `timeoutMs`); returns what arrived. */
async function readStream(
  url: string,
  headers: Record<string, string>,
  done: (events: SseEvent[]) => boolean,
  timeoutMs = 5000,
): Promise<SseEvent[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  const events: SseEvent[] = [];
  try {
    const res = await fetch(url, { headers, signal: abort.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const parser = createParser({ onEvent: (e) => events.push({ event: e.event, id: e.id, data: e.data }) });
    const decoder = new TextDecoder();
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      parser.feed(decoder.decode(chunk, { stream: true }));
      if (done(events)) break;
    }
  } catch (error) {
    if (!abort.signal.aborted) throw error;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  return events;
}

const records = (events: SseEvent[]) =>
  events.filter((e) => e.event === 'record').map((e) => JSON.parse(e.data) as Record<string, unknown>);

async function login(): Promise<string> {
  const res = await fetch(`${dashboard.url}/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: dashboard.url },
    body: new URLSearchParams({ token: DASH, name: 'carol' }).toString(),
  });
  assert.equal(res.status, 303);
  return (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
}

describe('the gateway’s feed and limits', { timeout: 60_000 }, () => {
  test('/v1/events: a hello, the history, then live decisions; a resumed stream repeats nothing', async () => {
    const auth = { authorization: `Bearer ${ADMIN_A}` };
    assert.equal((await fetch(`${adminA}/v1/events`)).status, 401);
    const g = await onA.granted();
    const first = await http1Connect(a.port, g.tls, onA.destination);
    assert.equal(first.status, 200);
    first.socket.destroy();
    const seen = await readStream(`${adminA}/v1/events`, auth, (ev) =>
      records(ev).some((r) => r['type'] === 'tunnel_closed' && r['source_identity'] === g.identity),
    );
    assert.equal(seen[0]?.event, 'hello');
    const hello = JSON.parse(seen[0]?.data ?? '{}') as { instance: string };
    const mine = records(seen).filter((r) => r['source_identity'] === g.identity);
    assert.deepEqual(
      mine.map((r) => r['type']),
      ['decision', 'tunnel_closed'],
    );
    assert.equal(mine[0]?.['result'], 'allowed');
    assert.equal(mine[0]?.['permission_id'], g.permissionId);
    assert.equal(mine[1]?.['tunnel_id'], mine[0]?.['tunnel_id']);
    assert.equal(typeof mine[1]?.['bytes_client_to_dest'], 'number');
    const lastId = seen.filter((e) => e.id !== undefined).at(-1)?.id ?? '0';

    // Resume after lastId: only what came later, which is the next decision, made while streaming.
    const resumed = readStream(
      `${adminA}/v1/events?instance=${hello.instance}`,
      { ...auth, 'last-event-id': lastId },
      (ev) => records(ev).some((r) => r['source_identity'] === g.identity && r['result'] === 'denied'),
    );
    await new Promise((r) => setTimeout(r, 200));
    const refused = await http1Connect(a.port, g.tls, '127.0.0.1:9');
    assert.equal(refused.status, 403);
    const later = records(await resumed);
    assert.ok(later.every((r) => r['type'] !== 'tunnel_closed' || r['source_identity'] !== g.identity));
    assert.equal(later.filter((r) => r['source_identity'] === g.identity).length, 1);
  });

  test('/v1/limits: the limits in force for each identity asked about', async () => {
    const res = await fetch(`${adminA}/v1/limits?identity=agent-slow&identity=agent-other`, {
      headers: { authorization: `Bearer ${ADMIN_A}` },
    });
    assert.equal(res.status, 200);
    const body = (await res.json()) as Record<string, Record<string, Record<string, unknown>>>;
    assert.equal(body['identities']?.['agent-slow']?.['bytes_per_second'], 65536);
    assert.equal(body['identities']?.['agent-other']?.['bytes_per_second'], 1048576);
    assert.equal(body['identities']?.['agent-slow']?.['quota'], null);
  });
});

describe('one dashboard over two gateways', { timeout: 60_000 }, () => {
  test('tunnels of both are listed; close-all reaches both; a read-only gateway token refuses honestly', async () => {
    const cookie = await login();
    const g = await onA.granted();
    const onGatewayA = await onA.openBoth(g);
    const onGatewayB = await onB.openBoth(g);
    let listed: Array<{ gateway: string; source_identity: string }> = [];
    for (let i = 0; i < 100; i++) {
      const state = (await (await fetch(`${dashboard.url}/api/state`, { headers: { cookie } })).json()) as {
        tunnels: typeof listed;
        gateways: Array<{ gateway: string; connected: boolean }>;
      };
      listed = state.tunnels.filter((t) => t.source_identity === g.identity);
      if (listed.length === 4) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(listed.map((t) => t.gateway).sort(), ['gw-a', 'gw-a', 'gw-b', 'gw-b']);

    const session = (await (await fetch(`${dashboard.url}/api/session`, { headers: { cookie } })).json()) as {
      csrf: string;
    };
    const res = await fetch(`${dashboard.url}/api/tunnels/close`, {
      method: 'POST',
      headers: {
        cookie,
        'content-type': 'application/json',
        'x-csrf-token': session.csrf,
        origin: dashboard.url,
      },
      body: JSON.stringify({ identity: g.identity }),
    });
    const answer = (await res.json()) as { closed: number; errors: string[] };
    assert.equal(res.status, 200);
    assert.equal(answer.closed, 2);
    assert.equal(answer.errors.length, 1);
    assert.match(answer.errors[0] ?? '', /gateway gw-b: this needs the admin role/);
    await Promise.all([closed(onGatewayA.h1), closed(onGatewayA.h2)]);
    await echoes(onGatewayB.h1);
    await echoes(onGatewayB.h2);
    onGatewayB.h1.destroy();
    onGatewayB.h2.close();
    const line = await a.waitForLog((l) => l.msg === 'operator action' && l['operator_name'] !== undefined);
    assert.match(String(line['operator_name']), /^carol \(admin login, session [0-9a-f]{8}\)$/);
  });
});

describe('OTLP/HTTP JSON ingest', { timeout: 60_000 }, () => {
  const exportBody = (identity: string) => ({
    resourceLogs: [
      {
        resource: { attributes: [{ key: 'service.instance.id', value: { stringValue: 'rust-gw' } }] },
        scopeLogs: [
          {
            logRecords: [
              {
                timeUnixNano: String(BigInt(Date.now()) * 1_000_000n),
                body: { stringValue: 'CONNECT denied' },
                attributes: [
                  { key: 'source_identity', value: { stringValue: identity } },
                  { key: 'dest_authority', value: { stringValue: 'api.example.com:443' } },
                  { key: 'deny_reason', value: { stringValue: 'bad_signature' } },
                ],
              },
            ],
          },
        ],
      },
    ],
  });

  test('needs its token and JSON; gzip is accepted; the records reach the dashboard marked with their source', async () => {
    const body = gzipSync(JSON.stringify(exportBody('agent-from-rust')));
    const post = (headers: Record<string, string>, payload: Buffer | string = body) =>
      fetch(`${dashboard.url}/v1/logs`, { method: 'POST', headers, body: payload });
    assert.equal(
      (await post({ 'content-type': 'application/json', 'content-encoding': 'gzip' })).status,
      401,
    );
    assert.equal(
      (
        await post({
          authorization: `Bearer ${DASH}`,
          'content-type': 'application/json',
          'content-encoding': 'gzip',
        })
      ).status,
      401,
      'a login token is not the ingest token',
    );
    const auth = { authorization: `Bearer ${INGEST}` };
    assert.equal((await post({ ...auth, 'content-type': 'application/x-protobuf' })).status, 415);
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024, 0x20));
    assert.equal(
      (await post({ ...auth, 'content-type': 'application/json', 'content-encoding': 'gzip' }, bomb)).status,
      413,
    );
    const ok = await post({ ...auth, 'content-type': 'application/json', 'content-encoding': 'gzip' });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), {});

    const cookie = await login();
    const seen = await readStream(`${dashboard.url}/api/events`, { cookie }, (ev) =>
      records(ev).some((r) => r['source_identity'] === 'agent-from-rust'),
    );
    const record = records(seen).find((r) => r['source_identity'] === 'agent-from-rust');
    assert.equal(record?.['gateway'], 'otlp:rust-gw');
    assert.equal(record?.['reason'], 'bad_signature');
    assert.equal(record?.['result'], 'denied');
  });
});
