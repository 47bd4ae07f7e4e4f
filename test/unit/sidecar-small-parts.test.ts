import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffDelayMs } from '../../src/sidecar/backoff.js';
import { endToEndHeaders } from '../../src/sidecar/forward-http.js';
import { describeGatewayError } from '../../src/sidecar/gateway-errors.js';
import { closingResponse } from '../../src/sidecar/local-responses.js';
import { basicCredential, proxyAuthChecker } from '../../src/sidecar/proxy-auth.js';
import { startTunnelTrace } from '../../src/sidecar/trace.js';

const basic = (text: string) => `Basic ${Buffer.from(text).toString('base64')}`;

describe('sidecar proxy credential', () => {
  test('without a configured credential every request passes', () => {
    assert.equal(proxyAuthChecker(undefined)(undefined), true);
  });

  test('only the exact user:password in a Basic header passes', () => {
    const check = proxyAuthChecker({ user: 'agent', password: 'pa:ss' });
    assert.equal(check(basic('agent:pa:ss')), true);
    assert.equal(check(`bAsIc  ${Buffer.from('agent:pa:ss').toString('base64')}`), true);
    for (const header of [
      undefined,
      '',
      basic('agent:pa:s'),
      basic('Agent:pa:ss'),
      basic('agent:pa:ss '),
      `Bearer ${Buffer.from('agent:pa:ss').toString('base64')}`,
      'Basic !!!',
    ]) {
      assert.equal(check(header), false, String(header));
    }
  });

  test('basicCredential decodes the user:password', () => {
    assert.equal(basicCredential(basic('u:p')), 'u:p');
    assert.equal(basicCredential('Digest x'), undefined);
  });
});

describe('sidecar backoff', () => {
  const opts = { initialMs: 100, maxMs: 5000 };
  test('no delay before the first attempt; doubling bounds; capped', () => {
    assert.equal(backoffDelayMs(0, opts), 0);
    for (const [failures, ceiling] of [
      [1, 100],
      [2, 200],
      [3, 400],
      [7, 5000],
      [200, 5000],
    ] as const) {
      assert.equal(
        backoffDelayMs(failures, opts, () => 0),
        ceiling / 2,
      );
      assert.equal(
        backoffDelayMs(failures, opts, () => 1),
        ceiling,
      );
    }
  });
});

describe('sidecar trace context', () => {
  test('a new trace per tunnel, sent as a valid traceparent', () => {
    const a = startTunnelTrace(undefined);
    const b = startTunnelTrace(undefined);
    assert.match(a.header, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    assert.equal(a.header, `00-${a.traceId}-${a.spanId}-01`);
    assert.notEqual(a.traceId, b.traceId);
    assert.equal(a.parentSpanId, undefined);
  });

  test("the agent's own traceparent is continued with a child span", () => {
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const t = startTunnelTrace(incoming);
    assert.equal(t.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
    assert.equal(t.parentSpanId, '00f067aa0ba902b7');
    assert.notEqual(t.spanId, '00f067aa0ba902b7');
    assert.equal(startTunnelTrace('00-garbage').parentSpanId, undefined);
  });
});

describe('sidecar HTTP forwarding headers', () => {
  test('hop-by-hop headers and those named by Connection are dropped, others kept in order and case', () => {
    const kept = endToEndHeaders([
      'Host',
      'example.com',
      'Proxy-Authorization',
      'Basic eA==',
      'Connection',
      'keep-alive, X-Private',
      'X-Private',
      'secret',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'Accept',
      'text/plain',
      'Proxy-Connection',
      'keep-alive',
      'accept',
      'text/html',
    ]);
    assert.deepEqual(kept, [
      ['Host', 'example.com'],
      ['Accept', 'text/plain'],
      ['accept', 'text/html'],
    ]);
  });
});

describe('sidecar local responses and error texts', () => {
  test('a closing response carries length, type and extra headers', () => {
    const text = closingResponse(407, 'sidecar: no\n', {
      'Proxy-Authenticate': 'Basic realm="x"',
    }).toString();
    assert.equal(
      text,
      'HTTP/1.1 407 Proxy Authentication Required\r\nContent-Type: text/plain; charset=utf-8\r\n' +
        'Content-Length: 12\r\nConnection: close\r\nProxy-Authenticate: Basic realm="x"\r\n\r\nsidecar: no\n',
    );
  });

  test('connection errors are explained, unknown ones keep their code', () => {
    const err = (code: string) => Object.assign(new Error('raw'), { code });
    assert.match(describeGatewayError(err('ECONNREFUSED')), /^connection refused/);
    assert.match(describeGatewayError(err('UNABLE_TO_VERIFY_LEAF_SIGNATURE')), /not signed by the CA/);
    assert.match(describeGatewayError(err('ERR_TLS_CERT_ALTNAME_INVALID')), /--gateway-server-name/);
    assert.equal(describeGatewayError(err('EWEIRD')), 'raw (EWEIRD)');
    assert.equal(describeGatewayError(new Error('plain')), 'plain');
  });
});
