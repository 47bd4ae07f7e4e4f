import assert from 'node:assert/strict';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { Tunnel, type TunnelSummary } from '../../src/tunnel/tunnel.js';

/**
 * The relay on real loopback sockets: `agent` ⇄ [client side | Tunnel | dest side] ⇄ `destination`.
 * `agent` and `destination` are the test's ends; the tunnel owns the middle two.
 */
interface Rig {
  agent: Socket;
  destination: Socket;
  tunnel: Tunnel;
  closed: Promise<TunnelSummary>;
}

async function pair(): Promise<[Socket, Socket]> {
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const dialled = connect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  const result: [Socket, Socket] = [dialled, await accepted];
  server.close();
  return result;
}

async function rig(idleTimeoutMs = 60_000): Promise<Rig> {
  const [agent, clientSide] = await pair();
  const [destSide, destination] = await pair();
  let resolve!: (s: TunnelSummary) => void;
  const closed = new Promise<TunnelSummary>((r) => {
    resolve = r;
  });
  const tunnel = new Tunnel(clientSide, destSide, { idleTimeoutMs, onClose: resolve });
  for (const s of [agent, destination]) s.on('error', () => {});
  return { agent, destination, tunnel, closed };
}

function readAll(s: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      text += d;
    });
    s.once('end', () => resolve(text));
  });
}

test('bytes flow both ways and half-close keeps the other direction open', async () => {
  const { agent, destination, closed } = await rig();
  const atDestination = readAll(destination);
  agent.end('request');
  // The agent has ended its direction; the destination still answers through the tunnel.
  assert.equal(await atDestination, 'request');
  const atAgent = readAll(agent);
  destination.end('response after the client FIN');
  assert.equal(await atAgent, 'response after the client FIN');
  const summary = await closed;
  assert.equal(summary.cause, 'completed');
  assert.equal(summary.bytesClientToDest, 'request'.length);
  assert.equal(summary.bytesDestToClient, 'response after the client FIN'.length);
});

test('a reset on one side tears down the other and reports the error', async () => {
  const { agent, destination, closed } = await rig();
  const destinationEnded = new Promise((r) => destination.once('end', r));
  // Once the bytes have crossed, the tunnel is established on both sides; then the agent resets.
  const crossed = new Promise((r) => destination.once('data', r));
  agent.write('partial');
  await crossed;
  agent.resetAndDestroy();
  const summary = await closed;
  await destinationEnded;
  assert.equal(summary.cause, 'client_error');
  assert.match(summary.error ?? '', /ECONNRESET/);
  assert.equal(summary.bytesClientToDest, 'partial'.length);
});

test('no bytes for the idle timeout closes the tunnel', async () => {
  const { agent, closed } = await rig(30);
  const agentEnded = new Promise((r) => agent.once('end', r));
  agent.resume();
  const summary = await closed;
  assert.equal(summary.cause, 'idle_timeout');
  await agentEnded;
});

test('close(shutdown) ends both sides with that cause', async () => {
  const { agent, destination, tunnel, closed } = await rig();
  agent.resume();
  destination.resume();
  tunnel.close('shutdown');
  assert.equal((await closed).cause, 'shutdown');
});

test('a destination that does not read makes the tunnel stop reading: bounded buffering', async () => {
  const { agent, destination, tunnel } = await rig();
  destination.pause();
  const block = Buffer.alloc(64 * 1024, 7);
  // Keep writing until a backlog builds up at the agent (every kernel buffer on the way is full)
  // and the relay has stopped taking bytes for a while.
  const backlog = 1024 * 1024;
  let stableRounds = 0;
  let last = -1;
  for (let i = 0; i < 4000 && stableRounds < 40; i++) {
    if (agent.writableLength < backlog) agent.write(block);
    await new Promise((r) => setTimeout(r, 2));
    const stalled = tunnel.up.bytes === last && agent.writableLength >= backlog;
    stableRounds = stalled ? stableRounds + 1 : 0;
    last = tunnel.up.bytes;
  }
  assert.ok(stableRounds >= 40, 'the relay stopped forwarding while the destination does not read');
  // What the gateway holds: the sink's write buffer, at most its high-water mark plus one chunk.
  assert.ok(
    tunnel.dest.writableLength <= tunnel.dest.writableHighWaterMark + 64 * 1024,
    `gateway holds ${tunnel.dest.writableLength} bytes`,
  );
  agent.destroy();
  destination.destroy();
});
