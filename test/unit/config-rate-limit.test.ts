import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DEFAULT_MAX_TUNNELS_PER_IDENTITY,
  limitsFor,
  rateLimitProblems,
  rateLimitSettings,
} from '../../src/config/rate-limit.js';

describe('rateLimitSettings: inheritance', () => {
  test('defaults: everything off, 1 MiB bursts, 256 tunnels', () => {
    const s = rateLimitSettings({ bytes_per_second: 0, burst_bytes: 1_048_576 });
    assert.equal(DEFAULT_MAX_TUNNELS_PER_IDENTITY, 256);
    assert.deepEqual(s.defaults, {
      upload: { bytesPerSecond: 0, burstBytes: 1_048_576 },
      download: { bytesPerSecond: 0, burstBytes: 1_048_576 },
      maxTunnels: 256,
      uploadQuota: { bytes: 0, windowS: 86_400 },
      downloadQuota: { bytes: 0, windowS: 86_400 },
    });
    assert.deepEqual(s.total, { bytesPerSecond: 0, burstBytes: 1_048_576 });
    assert.equal(s.shared, false);
  });

  test('quotas inherit key by key like the rates; the window defaults to a day', () => {
    const s = rateLimitSettings({
      bytes_per_second: 0,
      burst_bytes: 1_048_576,
      shared: true,
      upload_quota_bytes: 1_000_000,
      download_quota_window_s: 3600,
      identities: {
        'agent-x': { upload_quota_window_s: 60 },
        'agent-y': { upload_quota_bytes: 0, download_quota_bytes: 5 },
      },
    });
    assert.equal(s.shared, true);
    assert.deepEqual(s.defaults.uploadQuota, { bytes: 1_000_000, windowS: 86_400 });
    assert.deepEqual(s.defaults.downloadQuota, { bytes: 0, windowS: 3600 });
    assert.deepEqual(limitsFor(s, 'agent-x').uploadQuota, { bytes: 1_000_000, windowS: 60 });
    assert.deepEqual(limitsFor(s, 'agent-y').uploadQuota, { bytes: 0, windowS: 86_400 });
    assert.deepEqual(limitsFor(s, 'agent-y').downloadQuota, { bytes: 5, windowS: 3600 });
  });

  test('an identity table overrides key by key and inherits the rest', () => {
    const s = rateLimitSettings({
      bytes_per_second: 1000,
      burst_bytes: 4000,
      download_bytes_per_second: 2000,
      total_bytes_per_second: 9000,
      max_tunnels_per_identity: 8,
      identities: {
        'agent-x': { bytes_per_second: 5000 },
        'agent-y': { burst_bytes: 7000, download_burst_bytes: 100, max_tunnels_per_identity: 0 },
      },
    });
    assert.deepEqual(limitsFor(s, 'agent-x'), {
      upload: { bytesPerSecond: 5000, burstBytes: 4000 },
      download: { bytesPerSecond: 2000, burstBytes: 4000 },
      maxTunnels: 8,
      uploadQuota: { bytes: 0, windowS: 86_400 },
      downloadQuota: { bytes: 0, windowS: 86_400 },
    });
    // The download burst follows the identity's own burst_bytes unless set.
    assert.deepEqual(limitsFor(s, 'agent-y'), {
      upload: { bytesPerSecond: 1000, burstBytes: 7000 },
      download: { bytesPerSecond: 2000, burstBytes: 100 },
      maxTunnels: 0,
      uploadQuota: { bytes: 0, windowS: 86_400 },
      downloadQuota: { bytes: 0, windowS: 86_400 },
    });
    assert.deepEqual(limitsFor(s, 'someone-else'), s.defaults);
    // Identities are matched verbatim (case-sensitive).
    assert.deepEqual(limitsFor(s, 'Agent-X'), s.defaults);
    assert.deepEqual(s.total, { bytesPerSecond: 9000, burstBytes: 4000 });
  });
});

describe('rateLimitProblems', () => {
  test('a quota without shared = true is reported at its key (it must outlive restarts)', () => {
    const problems = rateLimitProblems({
      upload_quota_bytes: 10,
      identities: { 'agent-x': { download_quota_bytes: 5 } },
    });
    assert.deepEqual(
      problems.map((p) => p.key),
      ['rate_limit.upload_quota_bytes', 'rate_limit.identities.agent-x.download_quota_bytes'],
    );
    assert.match(problems[0]!.message, /shared = true/);
    assert.deepEqual(rateLimitProblems({ shared: true, upload_quota_bytes: 10 }), []);
  });

  test('a rate with a burst of 0 in the same table is reported at the burst', () => {
    assert.deepEqual(
      rateLimitProblems({ bytes_per_second: 1000, burst_bytes: 0 }).map((p) => p.key),
      ['rate_limit.burst_bytes'],
    );
  });

  test('an inherited burst of 0 is reported at the rate that uses it, once per identity', () => {
    const problems = rateLimitProblems({
      burst_bytes: 0,
      identities: { 'agent.x': { bytes_per_second: 10 }, 'agent-y': { download_bytes_per_second: 10 } },
    });
    assert.deepEqual(
      problems.map((p) => p.key),
      [
        'rate_limit.identities."agent.x".bytes_per_second',
        'rate_limit.identities.agent-y.download_bytes_per_second',
      ],
    );
    assert.match(problems[0]!.message, /the burst it uses, rate_limit\.burst_bytes, is 0/);
  });

  test('rate 0 with burst 0 is fine (off), and wrong types are left to the schema', () => {
    assert.deepEqual(rateLimitProblems({ bytes_per_second: 0, burst_bytes: 0 }), []);
    assert.deepEqual(rateLimitProblems({ bytes_per_second: 100, burst_bytes: '0' }), []);
    assert.deepEqual(rateLimitProblems({ bytes_per_second: -1, burst_bytes: 0 }), []);
    assert.deepEqual(rateLimitProblems(undefined), []);
  });

  test('an empty identity name is refused', () => {
    assert.deepEqual(
      rateLimitProblems({ identities: { '': { bytes_per_second: 1 } } }).map((p) => p.key),
      ['rate_limit.identities.""'],
    );
  });
});
