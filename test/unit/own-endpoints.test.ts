import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EgressGuard } from '../../src/egress/guard.js';
import {
  LISTENER,
  protectedEndpoints,
  REGISTRY,
  resolveRegistryEndpoints,
} from '../../src/gateway/own-addresses.js';

/** Which endpoints the gateway keeps tunnels away from, for the listener and the registry. */

const OWN = ['127.0.0.1', '::1', '10.0.0.5'];
const THIS_HOST = ['127.0.0.0/8', '::1/128', '0.0.0.0/8', '::/128'];
const cidrsAt = (endpoints: ReturnType<typeof protectedEndpoints>, port: number, what: string) =>
  endpoints
    .filter((e) => e.port === port && e.what === what)
    .map((e) => e.cidr)
    .sort();

describe('protectedEndpoints', () => {
  it('a listener on a wildcard or loopback address is protected on every address of this host', () => {
    for (const host of ['0.0.0.0', '::', '127.0.0.1', '::1', '10.0.0.5']) {
      const endpoints = protectedEndpoints({
        ownAddresses: OWN,
        listener: { host, port: 8443 },
        registry: [],
      });
      assert.deepEqual(cidrsAt(endpoints, 8443, LISTENER), [...OWN, ...THIS_HOST].sort(), host);
    }
  });

  it('a listener on an address that is not this host (a VIP, say) is protected on that address', () => {
    const endpoints = protectedEndpoints({
      ownAddresses: OWN,
      listener: { host: '192.0.2.10', port: 8443 },
      registry: [],
    });
    assert.deepEqual(cidrsAt(endpoints, 8443, LISTENER), ['192.0.2.10']);
  });

  it('a registry on this host is protected at its port on every address; a remote one at its address', () => {
    const endpoints = protectedEndpoints({
      ownAddresses: OWN,
      listener: { host: '0.0.0.0', port: 8443 },
      registry: [
        { addresses: ['127.0.0.1'], port: 5432 },
        { addresses: ['10.20.0.7', '2001:db8::7'], port: 6432 },
      ],
    });
    assert.deepEqual(cidrsAt(endpoints, 5432, REGISTRY), [...OWN, ...THIS_HOST].sort());
    assert.deepEqual(cidrsAt(endpoints, 6432, REGISTRY), ['10.20.0.7', '2001:db8::7']);
    // Every endpoint is something the guard accepts, and it refuses them with allow_cidrs open wide.
    const guard = new EgressGuard({
      allowCidrs: ['0.0.0.0/0', '::/0'],
      denyCidrs: [],
      ownAddresses: [],
      protectedEndpoints: endpoints,
    });
    assert.equal(guard.check('127.0.0.1', 5432).ok, false);
    assert.equal(guard.check('10.0.0.5', 8443).ok, false);
    assert.equal(guard.check('10.20.0.7', 6432).ok, false);
    assert.equal(guard.check('10.20.0.7', 5432).ok, true);
  });
});

describe('resolveRegistryEndpoints', () => {
  it('resolves names once, keeps literals (bracketed IPv6 too) and names a host that does not resolve', async () => {
    const lookup = async (host: string) => {
      if (host === 'db.internal') return [{ address: '10.20.0.7', family: 4 as const }];
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    };
    assert.deepEqual(
      await resolveRegistryEndpoints(
        [
          { host: 'db.internal', port: 5432 },
          { host: '[::1]', port: 5433 },
        ],
        { timeoutMs: 1000, lookup },
      ),
      [
        { addresses: ['10.20.0.7'], port: 5432 },
        { addresses: ['::1'], port: 5433 },
      ],
    );
    await assert.rejects(
      resolveRegistryEndpoints([{ host: 'gone.internal', port: 5432 }], { timeoutMs: 1000, lookup }),
      /cannot resolve the registry host "gone\.internal", which tunnels must be kept away from/,
    );
  });
});
