import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError } from '../../src/config/errors.js';
import { parseConfigText } from '../../src/config/load.js';
import { QueryGate } from '../../src/registry/query-gate.js';
import { EventSeam } from '../../src/session/event-seam.js';
import { resolveSidecarConfig } from '../../src/sidecar/config.js';

const SIDECAR = {
  gateway_addr: 'gateway.internal:8443',
  gateway_ca_path: 'ca.pem',
  cert_path: 'agent.pem',
  key_path: 'agent-key.pem',
};
const TOKEN = 'x'.repeat(32);

function sidecarProblems(overrides: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    resolveSidecarConfig({
      fileDocument: undefined,
      source: 'test',
      overrides: { ...SIDECAR, ...overrides },
      env,
    });
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  return [];
}

describe('sidecar admin listener and OTLP settings', () => {
  test('a loopback admin address with a token from the environment', () => {
    const c = resolveSidecarConfig({
      fileDocument: undefined,
      source: 'test',
      overrides: { ...SIDECAR, admin_listen_addr: '127.0.0.1:9464', otlp_endpoint: 'http://collector:4317' },
      env: { AGENT_GATEWAY_SIDECAR_ADMIN_TOKEN: TOKEN },
    });
    assert.deepEqual(c.admin, { listen: { host: '127.0.0.1', port: 9464 }, token: TOKEN });
    assert.equal(c.tracing.settings?.serviceName, 'agent_gateway_sidecar');
    assert.equal(c.tracing.settings?.protocol, 'grpc');
  });

  test('refused: a non-loopback admin address, a missing or short token, an unknown protocol', () => {
    const env = { AGENT_GATEWAY_SIDECAR_ADMIN_TOKEN: TOKEN };
    assert.match(
      sidecarProblems({ admin_listen_addr: '0.0.0.0:9464' }, env).join('\n'),
      /--admin-listen: 0\.0\.0\.0 is not a loopback/,
    );
    assert.match(
      sidecarProblems({ admin_listen_addr: '127.0.0.1:9464' }).join('\n'),
      /AGENT_GATEWAY_SIDECAR_ADMIN_TOKEN is not set/,
    );
    assert.match(
      sidecarProblems(
        { admin_listen_addr: '127.0.0.1:9464', admin_token_env: 'SHORT' },
        { SHORT: 'abc' },
      ).join('\n'),
      /--admin-token-env: environment variable SHORT must hold at least 24 characters/,
    );
    assert.match(
      sidecarProblems({ otlp_protocol: 'udp' }).join('\n'),
      /--otlp-protocol: must be one of "grpc", "http\/protobuf", "http\/json"/,
    );
    assert.deepEqual(sidecarProblems({}), [], 'none of it is required');
  });
});

describe('gateway [observability] and [server] keys', () => {
  const base = (extra: string) =>
    `[server]\nlisten_addr = "127.0.0.1:0"\ntls_cert_path = "c"\ntls_key_path = "k"\n` +
    `[policy]\ndatabase_url = "postgres://x@h/db"\n[observability]\n${extra}\n`;

  test('defaults: no export, grpc when an endpoint is given, per-identity series off, a 5 s drain delay', () => {
    const { config } = parseConfigText(base(''), 't.toml', {});
    assert.equal(config.observability.otlp_protocol, undefined);
    assert.equal(config.observability.per_identity_metrics, false);
    assert.equal(config.observability.per_identity_metrics_max, 1000);
    assert.equal(config.server.drain_delay_s, 5);
  });

  test('bad values are named', () => {
    try {
      parseConfigText(base('otlp_protocol = "grpcs"\nper_identity_metrics_max = 0'), 't.toml', {});
      assert.fail('expected a ConfigError');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      const text = error.problems.join('\n');
      assert.match(
        text,
        /observability\.otlp_protocol: must be one of "grpc", "http\/protobuf", "http\/json"/,
      );
      assert.match(text, /observability\.per_identity_metrics_max: must be > 0/);
    }
  });
});

describe('seams and gates the telemetry relies on', () => {
  test('an EventSeam subscriber may be a class instance: its prototype methods are its handlers', () => {
    const seam = new EventSeam<{ ping: number; pong: string }>();
    class Counter {
      pings = 0;
      ping(n: number) {
        this.pings += n;
      }
    }
    const counter = new Counter();
    seam.subscribe(counter);
    seam.emit('ping', 2);
    seam.emit('pong', 'ignored');
    assert.equal(counter.pings, 2);
    assert.equal(seam.has('pong'), false);
  });

  test('a suspended query gate refuses at once without running the query, until resumed', async () => {
    const gate = new QueryGate(1);
    let ran = 0;
    gate.suspend('not verified');
    const refused = await gate.run(async () => ++ran, 1000);
    assert.deepEqual([refused.ok, ran], [false, 0]);
    assert.equal(!refused.ok && (refused.error as Error).message, 'not verified');
    gate.resume();
    const answered = await gate.run(async () => ++ran, 1000);
    assert.deepEqual(answered, { ok: true, value: 1 });
  });
});
