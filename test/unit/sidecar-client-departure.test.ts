import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { watchDeparture } from '../../src/sidecar/client-departure.js';

/**
 * The sidecar's watch on a local client between its request and the tunnel, on real loopback sockets:
 * `server` is the sidecar's side (what the watch sees), `client` the local client.
 */
describe('sidecar: watching a local client for its departure', { timeout: 20_000 }, () => {
  let listener: Server;
  const accepted: Socket[] = [];
  const waiting: Array<(s: Socket) => void> = [];

  before(async () => {
    // allowHalfOpen as Node's HTTP server sockets are: a client's end does not end ours.
    // Not read until the watch reads it, like a socket Node's HTTP server hands over with a CONNECT.
    listener = createServer({ allowHalfOpen: true }, (socket) => {
      const next = waiting.shift();
      if (next) next(socket);
      else accepted.push(socket);
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  });

  const opened: Socket[] = [];
  after(async () => {
    for (const s of opened) s.destroy();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  });

  async function pair(): Promise<{ client: Socket; server: Socket }> {
    const server = new Promise<Socket>((resolve) => {
      const early = accepted.shift();
      if (early) resolve(early);
      else waiting.push(resolve);
    });
    const client = connect((listener.address() as AddressInfo).port, '127.0.0.1');
    await once(client, 'connect');
    opened.push(client, await server);
    return { client, server: await server };
  }

  const aborted = (signal: AbortSignal) =>
    signal.aborted ? Promise.resolve() : once(signal, 'abort').then(() => undefined);

  test('a CONNECT client that half-closes is gone; what it sent first is kept for the tunnel', async () => {
    const { client, server } = await pair();
    const watch = watchDeparture(server, true);
    client.end('early bytes');
    await aborted(watch.signal);
    assert.equal(watch.departed, true);
    assert.equal(watch.stop().toString(), 'early bytes');
    server.destroy();
  });

  test('a client that stays: nothing is lost, and a reader attached after stop() gets the rest', async () => {
    const { client, server } = await pair();
    const listeners = () => ['data', 'end', 'close'].map((e) => server.listenerCount(e));
    const before = listeners();
    const watch = watchDeparture(server, true);
    client.write('first ');
    await once(server, 'data');
    assert.equal(watch.departed, false);
    const early = watch.stop();
    assert.deepEqual(listeners(), before, 'stop() removes every listener it added');
    // The tunnel's reader, attached in the same turn as stop().
    const rest: Buffer[] = [];
    server.on('data', (c: Buffer) => rest.push(c));
    client.end('second');
    await once(server, 'end');
    assert.equal(Buffer.concat([early, ...rest]).toString(), 'first second');
    assert.equal(watch.departed, false, 'a departure after stop() is the tunnel’s business');
    server.destroy();
  });

  test('a client that sends more than the early-bytes limit is paused, then flows again after stop()', async () => {
    const { client, server } = await pair();
    const watch = watchDeparture(server, true);
    const big = Buffer.alloc(1024 * 1024, 7);
    client.write(big);
    // The watch stops reading at its limit: the rest waits in the socket, not in the sidecar.
    while (server.isPaused() === false) await once(server, 'data');
    const early = watch.stop();
    assert.ok(early.length >= 64 * 1024 && early.length < big.length, `kept ${early.length} bytes`);
    let rest = 0;
    server.on('data', (c: Buffer) => {
      rest += c.length;
    });
    client.end();
    await once(server, 'end');
    assert.equal(early.length + rest, big.length);
    server.destroy();
  });

  test('a request socket (read by the HTTP server): its close is seen; it is not read by the watch', async () => {
    const { client, server } = await pair();
    const watch = watchDeparture(server, false);
    assert.equal(server.listenerCount('data'), 0);
    client.destroy();
    server.resume(); // the HTTP server reads it
    await aborted(watch.signal);
    assert.equal(watch.stop().length, 0);
  });

  test('a socket already gone counts as departed at once', async () => {
    const { client, server } = await pair();
    client.destroy();
    server.destroy();
    assert.equal(watchDeparture(server, true).departed, true);
  });
});
