import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type LookupFunction, type NetConnectOpts, type Server, Socket } from 'node:net';
import { describe, it } from 'node:test';
import { DialError, dialVetted } from '../../src/egress/dial.js';
import { EgressGuard } from '../../src/egress/guard.js';
import {
  type LookupFn,
  type ResolvedAddress,
  ResolveError,
  resolveHost,
  vetDestination,
} from '../../src/egress/resolve.js';

const guard = new EgressGuard({ allowCidrs: [], denyCidrs: [], ownAddresses: [] });

/** A lookup that answers from a table and records what it was asked. */
function fakeLookup(table: Record<string, ResolvedAddress[]>): LookupFn & { asked: string[] } {
  const asked: string[] = [];
  const fn = async (host: string) => {
    asked.push(host);
    const answer = table[host];
    if (answer === undefined)
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return answer;
  };
  return Object.assign(fn, { asked });
}

function failingLookup(code: string | undefined): LookupFn {
  return async (host) => {
    throw Object.assign(new Error(`lookup ${host} failed`), code === undefined ? {} : { code });
  };
}

async function rejectsWith<T extends Error>(
  promise: Promise<unknown>,
  type: new (...args: never[]) => T,
): Promise<T> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected a ${type.name} rejection`);
}

describe('resolveHost', () => {
  it('returns IP literals as themselves without a lookup', async () => {
    const lookup = fakeLookup({});
    assert.deepEqual(await resolveHost('93.184.216.34', { timeoutMs: 1000, lookup }), [
      { address: '93.184.216.34', family: 4 },
    ]);
    assert.deepEqual(await resolveHost('2606:4700::1111', { timeoutMs: 1000, lookup }), [
      { address: '2606:4700::1111', family: 6 },
    ]);
    assert.deepEqual(lookup.asked, []);
  });

  it('returns the lookup answers in resolver order', async () => {
    const answers: ResolvedAddress[] = [
      { address: '2606:4700::1111', family: 6 },
      { address: '1.1.1.1', family: 4 },
    ];
    const lookup = fakeLookup({ 'one.example': answers });
    assert.deepEqual(await resolveHost('one.example', { timeoutMs: 1000, lookup }), answers);
    assert.deepEqual(lookup.asked, ['one.example']);
  });

  it('turns an empty answer into not_found', async () => {
    const error = await rejectsWith(
      resolveHost('empty.example', { timeoutMs: 1000, lookup: async () => [] }),
      ResolveError,
    );
    assert.equal(error.kind, 'not_found');
    assert.match(error.message, /"empty\.example" returned no addresses/);
  });

  it('classifies resolver errors', async () => {
    const cases: [string | undefined, string][] = [
      ['ENOTFOUND', 'not_found'],
      ['ENODATA', 'not_found'],
      ['EAI_NONAME', 'not_found'],
      ['ETIMEOUT', 'timeout'],
      ['EAI_AGAIN', 'failed'],
      ['ESERVFAIL', 'failed'],
      [undefined, 'failed'],
    ];
    for (const [code, kind] of cases) {
      const error = await rejectsWith(
        resolveHost('x.example', { timeoutMs: 1000, lookup: failingLookup(code) }),
        ResolveError,
      );
      assert.equal(error.kind, kind, String(code));
      assert.equal(error.code, code);
      assert.match(error.message, /"x\.example"/);
      assert.ok(error.cause instanceof Error);
    }
  });

  it('gives up with kind timeout when the lookup never answers', async () => {
    const never: LookupFn = () => new Promise(() => {});
    const error = await rejectsWith(
      resolveHost('slow.example', { timeoutMs: 5, lookup: never }),
      ResolveError,
    );
    assert.equal(error.kind, 'timeout');
    assert.match(error.message, /took longer than 5 ms/);
  });

  it('ignores a lookup that fails after the timeout fired', async () => {
    let failLate: (error: Error) => void = () => {};
    const late: LookupFn = () =>
      new Promise((_, reject) => {
        failLate = reject;
      });
    const error = await rejectsWith(
      resolveHost('late.example', { timeoutMs: 1, lookup: late }),
      ResolveError,
    );
    assert.equal(error.kind, 'timeout');
    // Would surface as an unhandled rejection (failing the test run) if nobody listened any more.
    failLate(new Error('too late'));
    await new Promise((resolve) => setImmediate(resolve));
  });

  it('uses the system resolver by default (localhost from /etc/hosts)', async (t) => {
    // Only when /etc/hosts names localhost, so the lookup stays on this machine.
    let hosts = '';
    try {
      hosts = readFileSync('/etc/hosts', 'utf8');
    } catch {}
    if (!/^\s*(127\.0\.0\.1|::1)\s.*\blocalhost\b/m.test(hosts)) {
      t.skip('/etc/hosts does not name localhost');
      return;
    }
    const answers = await resolveHost('localhost', { timeoutMs: 5000 });
    assert.ok(answers.length > 0);
    for (const answer of answers) assert.ok(['127.0.0.1', '::1'].includes(answer.address), answer.address);
  });
});

describe('vetDestination', () => {
  const lookup = fakeLookup({
    'public.example': [
      { address: '93.184.216.34', family: 4 },
      { address: '2606:2800:220:1:248:1893:25c8:1946', family: 6 },
    ],
    'rebind.example': [
      { address: '93.184.216.34', family: 4 },
      { address: '127.0.0.1', family: 4 },
    ],
    'mapped.example': [{ address: '::ffff:169.254.169.254', family: 6 }],
    'decimal-loopback': [{ address: '127.0.0.1', family: 4 }], // what getaddrinfo makes of "2130706433"
  });

  it('returns the first address when every answer passes', async () => {
    assert.deepEqual(await vetDestination('public.example', 443, guard, { timeoutMs: 1000, lookup }), {
      ok: true,
      address: { address: '93.184.216.34', family: 4 },
    });
  });

  it('refuses the whole destination when any answer is refused (rebinding hedge)', async () => {
    const result = await vetDestination('rebind.example', 443, guard, { timeoutMs: 1000, lookup });
    assert.deepEqual(result, {
      ok: false,
      kind: 'egress_refused',
      refusal: { ok: false, reason: 'loopback', address: '127.0.0.1', rule: '127.0.0.0/8' },
    });
  });

  it('vets what the resolver returned, not what the name looks like', async () => {
    const decimal = await vetDestination('decimal-loopback', 443, guard, { timeoutMs: 1000, lookup });
    assert.equal(
      decimal.ok === false && decimal.kind === 'egress_refused' && decimal.refusal.reason,
      'loopback',
    );
    const mapped = await vetDestination('mapped.example', 443, guard, { timeoutMs: 1000, lookup });
    assert.equal(
      mapped.ok === false && mapped.kind === 'egress_refused' && mapped.refusal.reason,
      'ipv4_embedded_ipv6',
    );
  });

  it('vets IP literals without a lookup', async () => {
    const literalLookup = fakeLookup({});
    const loopback = await vetDestination('::1', 443, guard, { timeoutMs: 1000, lookup: literalLookup });
    assert.equal(
      loopback.ok === false && loopback.kind === 'egress_refused' && loopback.refusal.reason,
      'loopback',
    );
    const zoned = await vetDestination('fe80::1%eth0', 443, guard, {
      timeoutMs: 1000,
      lookup: literalLookup,
    });
    assert.equal(
      zoned.ok === false && zoned.kind === 'egress_refused' && zoned.refusal.reason,
      'invalid_address',
    );
    const open = await vetDestination('8.8.8.8', 443, guard, { timeoutMs: 1000, lookup: literalLookup });
    assert.deepEqual(open, { ok: true, address: { address: '8.8.8.8', family: 4 } });
    assert.deepEqual(literalLookup.asked, []);
  });

  it('reports DNS failures as lookup_failed with the ResolveError', async () => {
    const missing = await vetDestination('missing.example', 443, guard, { timeoutMs: 1000, lookup });
    assert.equal(missing.ok, false);
    if (missing.ok || missing.kind !== 'lookup_failed')
      assert.fail(`expected lookup_failed, got ${JSON.stringify(missing)}`);
    assert.ok(missing.error instanceof ResolveError);
    assert.equal(missing.error.kind, 'not_found');

    const slow = await vetDestination('slow.example', 443, guard, {
      timeoutMs: 1,
      lookup: () => new Promise(() => {}),
    });
    assert.equal(slow.ok === false && slow.kind === 'lookup_failed' && slow.error.kind, 'timeout');
  });
});

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') return reject(new Error('no TCP address'));
      resolve(address.port);
    });
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('dialVetted', () => {
  it('connects to a loopback server with a clean, half-open-capable socket', async () => {
    const accepted: Socket[] = [];
    const server = createServer((socket) => {
      accepted.push(socket);
      socket.end('hello');
    });
    const port = await listen(server);
    try {
      const socket = await dialVetted({ address: '127.0.0.1', family: 4 }, port, 5000);
      assert.equal(socket.remoteAddress, '127.0.0.1');
      assert.equal(socket.remotePort, port);
      assert.equal(socket.allowHalfOpen, true);
      // Our connect/error listeners are gone: the caller owns the socket's events from here.
      assert.equal(socket.listenerCount('connect'), 0);
      assert.equal(socket.listenerCount('error'), 0);
      // Half-open: the server's FIN does not end our side; we can still write afterwards.
      const received: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => received.push(chunk));
      await new Promise<void>((resolve) => socket.once('end', () => resolve()));
      assert.equal(Buffer.concat(received).toString(), 'hello');
      assert.equal(socket.writable, true);
      socket.destroy();
    } finally {
      for (const s of accepted) s.destroy();
      await close(server);
    }
  });

  it('rejects with kind refused on a closed loopback port', async () => {
    const server = createServer();
    const port = await listen(server);
    await close(server);
    const error = await rejectsWith(dialVetted({ address: '127.0.0.1', family: 4 }, port, 5000), DialError);
    assert.equal(error.kind, 'refused');
    assert.equal(error.code, 'ECONNREFUSED');
    assert.match(error.message, new RegExp(`TCP connect to 127\\.0\\.0\\.1:${port} failed`));
  });

  it('times out, destroys the socket and leaves no listener behind (injected connector, no traffic)', async () => {
    let created: Socket | undefined;
    let seen: NetConnectOpts | undefined;
    const connect = (options: NetConnectOpts): Socket => {
      seen = options;
      created = new Socket(); // never connects, never sends anything
      return created;
    };
    const error = await rejectsWith(
      dialVetted({ address: '2001:db8::1', family: 6 }, 443, 1, { connect }),
      DialError,
    );
    assert.equal(error.kind, 'timeout');
    assert.match(error.message, /\[2001:db8::1\]:443 did not complete within 1 ms/);
    assert.ok(created);
    assert.equal(created.destroyed, true);
    assert.equal(created.listenerCount('connect'), 0);
    assert.equal(created.listenerCount('error'), 1); // only the swallow-late-errors guard
    // A late error on the abandoned socket must not become an uncaught exception.
    created.emit('error', new Error('late'));
    const options = seen as { host?: string; family?: number; port?: number; allowHalfOpen?: boolean };
    assert.deepEqual(
      {
        host: options.host,
        family: options.family,
        port: options.port,
        allowHalfOpen: options.allowHalfOpen,
      },
      { host: '2001:db8::1', family: 6, port: 443, allowHalfOpen: true },
    );
    // Any lookup Node might attempt while dialling is an error, never a second resolution.
    const lookup = (seen as { lookup?: LookupFunction }).lookup;
    assert.ok(lookup);
    const lookupError = await new Promise<unknown>((resolve) =>
      lookup('evil.example', {}, (err) => resolve(err)),
    );
    assert.match(String(lookupError), /refusing a DNS lookup of "evil\.example"/);
  });

  it('refuses to resolve names or dial malformed targets', async () => {
    const cases: [ResolvedAddress, number, number, RegExp][] = [
      [{ address: 'localhost', family: 4 }, 80, 1000, /"localhost" is not an IPv4 literal/],
      [{ address: '::1', family: 4 }, 80, 1000, /"::1" is not an IPv4 literal/],
      [{ address: 'fe80::1%lo', family: 6 }, 80, 1000, /is not an IPv6 literal/],
      [{ address: '127.0.0.1', family: 4 }, 0, 1000, /port 0 is not 1-65535/],
      [{ address: '127.0.0.1', family: 4 }, 65536, 1000, /port 65536/],
      [{ address: '127.0.0.1', family: 4 }, 80, 0, /timeout 0 ms must be positive/],
    ];
    for (const [address, port, timeoutMs, message] of cases) {
      const error = await rejectsWith(dialVetted(address, port, timeoutMs), DialError);
      assert.equal(error.kind, 'failed');
      assert.match(error.message, message);
    }
  });
});
