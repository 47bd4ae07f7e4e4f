#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { parseArgs } from 'node:util';

/**
 * `node dist/cli/demo/h2-get.js --proxy https://HOST:PORT --proxy-cacert CA --proxy-cert CERT --proxy-key KEY URL`
 *
 * Fetches an http:// URL through the gateway over an HTTP/2 CONNECT stream, for trying the gateway's HTTP/2
 * front end where curl cannot (curl before 8.1 speaks only HTTP/1.1 to an HTTPS proxy). The flags mirror
 * curl's. With --streams N, N requests share one HTTP/2 connection, one CONNECT stream each.
 */
const USAGE =
  'usage: node h2-get.js --proxy https://HOST:PORT --proxy-cacert FILE --proxy-cert FILE --proxy-key FILE ' +
  '[--streams N] http://HOST:PORT/PATH';

function main(): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse();
  } catch (err) {
    process.stderr.write(`h2-get: ${(err as Error).message}\n${USAGE}\n`);
    return Promise.resolve(2);
  }
  const { proxy, target, tls, streams } = parsed;
  return new Promise((resolve) => {
    const session = connect(proxy, tls);
    session.once('error', (err) => {
      process.stderr.write(`h2-get: HTTP/2 connection to ${proxy.origin} failed: ${err.message}\n`);
      resolve(1);
    });
    let pending = streams;
    let failed = false;
    const done = (ok: boolean) => {
      failed ||= !ok;
      if (--pending === 0) {
        session.close();
        resolve(failed ? 1 : 0);
      }
    };
    for (let i = 0; i < streams; i++) fetchOne(session, target, done);
  });
}

function fetchOne(session: ReturnType<typeof connect>, target: URL, done: (ok: boolean) => void): void {
  const authority = `${target.hostname}:${target.port || '80'}`;
  const stream = session.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
  stream.once('response', (headers) => {
    const status = Number(headers[':status']);
    process.stderr.write(`h2-get: HTTP/2 CONNECT ${authority} -> ${status}\n`);
    if (status !== 200) {
      stream.close();
      done(false);
      return;
    }
    // Inside the tunnel: a plain HTTP/1.1 request to the destination, answered and then closed.
    stream.write(
      `GET ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\nConnection: close\r\n\r\n`,
    );
    stream.end();
    stream.pipe(process.stdout, { end: false });
    stream.once('end', () => done(true));
  });
  stream.once('error', (err) => {
    process.stderr.write(`h2-get: stream error: ${err.message}\n`);
    done(false);
  });
}

function parse() {
  const { values, positionals } = parseArgs({
    options: {
      proxy: { type: 'string' },
      'proxy-cacert': { type: 'string' },
      'proxy-cert': { type: 'string' },
      'proxy-key': { type: 'string' },
      streams: { type: 'string', default: '1' },
    },
    allowPositionals: true,
  });
  const missing = ['proxy', 'proxy-cacert', 'proxy-cert', 'proxy-key'].filter(
    (k) => values[k as keyof typeof values] === undefined,
  );
  if (missing.length > 0) throw new Error(`missing --${missing.join(', --')}`);
  if (positionals.length !== 1) throw new Error('give exactly one http:// URL to fetch');
  const proxy = new URL(values.proxy ?? '');
  const target = new URL(positionals[0] ?? '');
  if (proxy.protocol !== 'https:')
    throw new Error('--proxy must be an https:// URL (the gateway speaks TLS)');
  if (target.protocol !== 'http:')
    throw new Error('the URL must be http:// (this tool speaks plain HTTP inside the tunnel)');
  const streams = Number(values.streams);
  if (!Number.isInteger(streams) || streams < 1 || streams > 100)
    throw new Error('--streams must be 1 to 100');
  const tls = {
    ca: readFileSync(values['proxy-cacert'] ?? ''),
    cert: readFileSync(values['proxy-cert'] ?? ''),
    key: readFileSync(values['proxy-key'] ?? ''),
  };
  return { proxy, target, tls, streams };
}

process.exitCode = await main();
