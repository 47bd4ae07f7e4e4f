import assert from 'node:assert/strict';
import { test } from 'node:test';
import { logsToRecords, MAX_RECORDS_PER_EXPORT, tracesToRecords } from '../../src/dashboard/otlp.js';

const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
const int = (key: string, value: number | string) => ({ key, value: { intValue: value } });
const resource = {
  attributes: [str('service.name', 'agent_gateway'), str('service.instance.id', 'gw-rust-1')],
};

/** What an OTLP/HTTP JSON export of the original gateway's CONNECT span looks like. */
const traces = {
  resourceSpans: [
    {
      resource,
      scopeSpans: [
        {
          spans: [
            {
              name: 'gateway CONNECT',
              startTimeUnixNano: '1767225600000000000',
              endTimeUnixNano: '1767225601000000000',
              attributes: [
                str('source_peer_addr', '10.0.0.5:40000'),
                str('dest_authority', 'api.example.com:443'),
              ],
              events: [
                {
                  name: 'CONNECT allowed',
                  timeUnixNano: '1767225600500000000',
                  attributes: [str('source_identity', 'agent-alpha'), str('permission_id', 'perm-1')],
                },
              ],
            },
            {
              name: 'gateway CONNECT',
              attributes: [str('dest_authority', 'evil.example:443')],
              events: [
                { name: 'CONNECT denied', attributes: [str('deny_reason', 'no_matching_permission')] },
              ],
            },
            { name: 'other span', attributes: [] },
          ],
        },
      ],
    },
  ],
};

test('spans: CONNECT allowed / denied events become decisions with the span’s and the event’s attributes', () => {
  const result = tracesToRecords(traces);
  assert.equal(result.records.length, 2);
  assert.equal(result.ignored, 1);
  const [allowed, denied] = result.records;
  assert.equal(allowed?.source, 'otlp:gw-rust-1');
  assert.deepEqual(
    {
      type: allowed?.record.type,
      ...(allowed?.record as unknown as Record<string, unknown>),
    },
    {
      type: 'decision',
      time: '2026-01-01T00:00:00.500Z',
      result: 'allowed',
      status: 200,
      source_identity: 'agent-alpha',
      dest_authority: 'api.example.com:443',
      reason: null,
      detail: null,
      protocol: 'HTTP/2',
      source_peer_addr: '10.0.0.5:40000',
      tunnel_id: null,
      permission_id: 'perm-1',
      signing_key_id: null,
    },
  );
  const d = denied?.record as unknown as Record<string, unknown>;
  assert.equal(d['result'], 'denied');
  assert.equal(d['reason'], 'no_matching_permission');
  assert.equal(d['dest_authority'], 'evil.example:443');
  assert.equal(d['source_identity'], null);
});

test('logs: the body names the event; tunnel closed needs its byte counts (int64 as decimal strings)', () => {
  const logs = {
    resourceLogs: [
      {
        resource,
        scopeLogs: [
          {
            logRecords: [
              {
                timeUnixNano: '1767225602000000000',
                body: { stringValue: 'tunnel closed' },
                attributes: [
                  str('source_identity', 'agent-alpha'),
                  str('dest_authority', 'api.example.com:443'),
                  int('bytes_client_to_dest', '12345'),
                  int('bytes_dest_to_client', 67890),
                  str('close_cause', 'completed'),
                ],
              },
              { body: { stringValue: 'tunnel closed' }, attributes: [str('source_identity', 'x')] },
              { body: { stringValue: 'listening' }, attributes: [] },
              { attributes: [str('msg', 'CONNECT denied'), str('deny_reason', 'bad_signature')] },
            ],
          },
        ],
      },
    ],
  };
  const result = logsToRecords(logs);
  assert.equal(result.malformed, 1, 'a close without byte counts');
  assert.equal(result.ignored, 1);
  const [closed, denied] = result.records.map((r) => r.record as unknown as Record<string, unknown>);
  assert.equal(closed?.['type'], 'tunnel_closed');
  assert.equal(closed?.['bytes_client_to_dest'], 12345);
  assert.equal(closed?.['bytes_dest_to_client'], 67890);
  assert.equal(closed?.['time'], '2026-01-01T00:00:02.000Z');
  assert.equal(denied?.['reason'], 'bad_signature');
});

test('anything malformed is ignored, never thrown; text is cut; one export yields a bounded number of records', () => {
  for (const junk of [
    null,
    1,
    'x',
    [],
    { resourceSpans: 'no' },
    { resourceSpans: [null, { scopeSpans: [1] }] },
  ]) {
    assert.deepEqual(tracesToRecords(junk).records, []);
    assert.deepEqual(logsToRecords(junk).records, []);
  }
  const long = tracesToRecords({
    resourceSpans: [
      {
        scopeSpans: [
          {
            spans: [
              {
                events: [
                  { name: 'CONNECT allowed', attributes: [str('source_identity', 'a'.repeat(10_000))] },
                ],
              },
            ],
          },
        ],
      },
    ],
  });
  const first = long.records[0];
  assert.ok(first !== undefined);
  const identity = String((first.record as unknown as Record<string, unknown>)['source_identity']);
  assert.ok(identity.length <= 257);
  assert.equal(long.records[0]?.source, 'otlp:unknown');
  const many = {
    resourceLogs: [
      {
        scopeLogs: [
          {
            logRecords: Array.from({ length: MAX_RECORDS_PER_EXPORT + 5 }, () => ({
              body: { stringValue: 'CONNECT allowed' },
            })),
          },
        ],
      },
    ],
  };
  const bounded = logsToRecords(many);
  assert.equal(bounded.records.length, MAX_RECORDS_PER_EXPORT);
  assert.equal(bounded.ignored, 5);
});
