import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { within } from '../helpers/bounded.js';
import { type GatewayProcess, type LogLine, startGatewayProcess } from '../helpers/gateway-process.js';
import { type GrantedRegistry, grantedRegistry } from '../helpers/granted-registry.js';
import { connectHeaders, type RawH2Client, rawH2Connect } from '../helpers/h2-frames.js';
import { startEchoServer } from '../helpers/loopback-servers.js';
import type { TestAgent } from '../helpers/pki.js';

const BOUND_MS = 10_000;
/** observability.deny_log_limit of these gateways: refusal lines written in full per source per 10 s. */
const DENY_LOG_LIMIT = 5;
const LONG_IDENTITY = `agent-${'x'.repeat(20_000)}`;
/** A bound for one log line, whatever the client sent (the real lines are well under it). */
const MAX_LINE_BYTES = 2048;

const sha256 = (value: string | Buffer) => createHash('sha256').update(value).digest('hex');
const lineBytes = (line: LogLine) => Buffer.byteLength(JSON.stringify(line));

/** A DER TLV with a definite length (short or long form). */
function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const length =
    n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), length, content]);
}
const IA5_STRING = 0x16;
const UTF8_STRING = 0x0c;

/**
 * What an unauthenticated client controls in the audit log is bounded (issue 10, item 4): identities and
 * authorities are escaped and cut (a hash of the whole value when cut), a malformed identity is logged as
 * claimed, and a flood of refusals from one source is counted instead of written, with a summary. Each test
 * connects from a loopback address of its own (127.0.0.x), since suppression counts per source address.
 */
describe('gateway: the log lines an attacker can cause', () => {
  let registry: GrantedRegistry;
  let echo: { port: number; close(): Promise<void> };
  let gateway: GatewayProcess;
  const agents: Record<string, TestAgent> = {};

  before(async () => {
    echo = await startEchoServer();
    registry = await grantedRegistry([echo.port]);
    const { pki } = registry;
    agents['long'] = await pki.agent(LONG_IDENTITY);
    agents['bidi'] = await pki.agent('agent-\u202Egpj.exe\u200B');
    agents['malformed'] = await pki.agentWithExtensionDer(
      tlv(IA5_STRING, Buffer.from('alpha\u202E', 'utf8')),
    );
    agents['malformedLong'] = await pki.agentWithExtensionDer(tlv(IA5_STRING, Buffer.alloc(20_000, 0x61)));
    agents['notUtf8'] = await pki.agentWithExtensionDer(tlv(UTF8_STRING, Buffer.from([0x61, 0xff, 0xfe])));
    gateway = await startGatewayProcess(
      await registry.config({ extraObservability: `deny_log_limit = ${DENY_LOG_LIMIT}` }),
    );
  });

  after(async () => {
    const code = await gateway?.stop();
    await echo?.close();
    await registry?.cleanup();
    assert.equal(code, 0, `gateway exit code; stderr: ${gateway?.stderr()}`);
  });

  /** One CONNECT from `localAddress` as `agent`; the gateway's line about it. */
  async function refusalLine(agent: TestAgent, localAddress: string, authority: string, msg: string) {
    const client: RawH2Client = await rawH2Connect(
      gateway.port,
      { caPath: registry.pki.caCertPath, agent },
      { localAddress },
    );
    try {
      client.headers(1, connectHeaders(authority));
      await within(client.answer(1), BOUND_MS, 'the CONNECT was answered');
      const line = await within(
        gateway.waitForLog((l) => l.msg === msg && l['source_peer_addr'] === client.peerAddr),
        BOUND_MS,
        `the gateway's '${msg}' line`,
      );
      assert.ok(lineBytes(line) < MAX_LINE_BYTES, `a ${lineBytes(line)}-byte line`);
      return line;
    } finally {
      client.destroy();
    }
  }

  const ungranted = '127.0.0.1:9';

  test('a 20,000-character identity is cut, with the hash of the whole identity', async () => {
    const line = await refusalLine(agents['long']!, '127.0.0.21', ungranted, 'CONNECT denied');
    assert.equal(line['deny_reason'], 'no_matching_permission');
    assert.equal(line['source_identity'], `${LONG_IDENTITY.slice(0, 256)}…`);
    assert.equal(line['source_identity_sha256'], sha256(LONG_IDENTITY));
  });

  test('a bidi override and a zero-width space in an identity are escaped, not written', async () => {
    const line = await refusalLine(agents['bidi']!, '127.0.0.22', ungranted, 'CONNECT denied');
    assert.equal(line['source_identity'], 'agent-\\u{202E}gpj.exe\\u{200B}');
    assert.equal(line['source_identity_sha256'], undefined, 'short: not cut, no hash');
  });

  test('a malformed identity is denied with the claimed value, escaped, and no identity', async () => {
    const line = await refusalLine(
      agents['malformed']!,
      '127.0.0.23',
      `127.0.0.1:${echo.port}`,
      'CONNECT denied',
    );
    assert.equal(line['deny_reason'], 'malformed_identity');
    assert.equal(line['source_identity'], undefined);
    assert.match(String(line['claimed_identity']), /alpha\\u\{202E\}$/);
    assert.ok(!String(line['claimed_identity']).includes('\u202E'));
  });

  test('a 20,000-byte malformed identity is cut, with the hash of the raw extension value', async () => {
    const line = await refusalLine(agents['malformedLong']!, '127.0.0.24', ungranted, 'CONNECT denied');
    assert.equal(line['deny_reason'], 'malformed_identity');
    assert.equal(String(line['claimed_identity']).length, 257);
    assert.equal(line['claimed_identity_sha256'], sha256(tlv(IA5_STRING, Buffer.alloc(20_000, 0x61))));
  });

  test('an identity that is not UTF-8 is claimed with replacement characters', async () => {
    const line = await refusalLine(agents['notUtf8']!, '127.0.0.25', ungranted, 'CONNECT denied');
    assert.equal(line['deny_reason'], 'malformed_identity');
    assert.match(String(line['claimed_identity']), /a\uFFFD\uFFFD$/);
  });

  test('a 10,000-character authority: the bad request line is bounded', async () => {
    const line = await refusalLine(registry.alpha, '127.0.0.26', `${'a'.repeat(10_000)}:443`, 'bad request');
    assert.ok(String(line['problem']).length <= 257, String(line['problem']));
  });

  test('a valid authority of the longest name is logged whole', async () => {
    const host = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    assert.equal(host.length, 253);
    const line = await refusalLine(registry.alpha, '127.0.0.27', `${host}:443`, 'CONNECT denied');
    assert.equal(line['dest_authority'], `${host}:443`);
  });
});

describe('gateway: a flood of refusals from one source', () => {
  let registry: GrantedRegistry;
  let long: TestAgent;
  const REFUSALS = 40;

  before(async () => {
    registry = await grantedRegistry([]);
    long = await registry.pki.agent(LONG_IDENTITY);
  });

  after(async () => {
    await registry?.cleanup();
  });

  test(`${REFUSALS} denies: ${DENY_LOG_LIMIT} lines in full, the rest counted in 'denies suppressed'`, async () => {
    const gateway = await startGatewayProcess(
      await registry.config({ extraObservability: `deny_log_limit = ${DENY_LOG_LIMIT}` }),
    );
    const source = '127.0.0.30';
    const client = await rawH2Connect(
      gateway.port,
      { caPath: registry.pki.caCertPath, agent: long },
      { localAddress: source },
    );
    const ids = Array.from({ length: REFUSALS }, (_, i) => 2 * i + 1);
    for (const id of ids) client.headers(id, connectHeaders('127.0.0.1:9'));
    await within(Promise.all(ids.map((id) => client.answer(id))), BOUND_MS, 'every CONNECT was answered');
    client.destroy();
    // Shutdown writes the pending summary (otherwise due when the source's 10 s window ends).
    assert.equal(await gateway.stop(), 0, gateway.stderr());

    const fromSource = gateway.logs.filter(
      (l) => String(l['source_peer_addr']).startsWith(`${source}:`) || l['source_addr'] === source,
    );
    const denied = fromSource.filter((l) => l.msg === 'CONNECT denied');
    const summaries = fromSource.filter((l) => l.msg === 'denies suppressed');
    assert.equal(denied.length, DENY_LOG_LIMIT);
    assert.ok(summaries.length >= 1);
    const suppressed = summaries.reduce((n, l) => n + Number(l['suppressed']), 0);
    const byKind = summaries.reduce(
      (n, l) =>
        n +
        Number((l['suppressed_by_kind'] as Record<string, number>)['CONNECT denied/no_matching_permission']),
      0,
    );
    assert.equal(denied.length + suppressed, REFUSALS, 'written + suppressed = every refusal');
    assert.equal(byKind, suppressed, 'all of them were this kind');
    const bytes = fromSource.reduce((n, l) => n + lineBytes(l), 0);
    // Without the bounds each line would carry the whole 20,000-character identity: 800 KB for 40.
    assert.ok(bytes < (DENY_LOG_LIMIT + summaries.length) * MAX_LINE_BYTES, `${bytes} bytes`);
  });
});
