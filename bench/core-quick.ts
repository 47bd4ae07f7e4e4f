/**
 * Quick core measurement (not the full suite): one tunnel's throughput per protocol against a bare
 * TLS relay run side by side, and CONNECT→200 latency on an existing HTTP/2 connection.
 *
 *   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node --import tsx bench/core-quick.ts
 *
 * Without BENCH_DATABASE_URL an embedded PostgreSQL is started. Client, gateway and sink share the
 * machine; all traffic is on 127.0.0.1.
 */

import { readFileSync } from 'node:fs';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { type ClientTls, h2Connect, h2Session, http1Connect } from '../test/helpers/clients.js';
import { freshDatabase } from '../test/helpers/db.js';
import { startGatewayProcess } from '../test/helpers/gateway-process.js';
import { startHashSink, writePattern } from '../test/helpers/loopback-servers.js';
import { createTestPki } from '../test/helpers/pki.js';
import {
  grantBenchAgent,
  median,
  percentile,
  startBareRelay,
  writeBenchGatewayConfig,
} from './suite-common.js';

const MIB = 1024 * 1024;
const SIZE = Number(process.env['BENCH_MIB'] ?? 256) * MIB;
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const CONNECTS = Number(process.env['BENCH_CONNECTS'] ?? 2000);

if (process.env['BENCH_DATABASE_URL']) process.env['TEST_DATABASE_URL'] = process.env['BENCH_DATABASE_URL'];

type Opener = () => Promise<Duplex>;

/** Upload: send SIZE, wait for the sink's byte count. Download: end at once, read SIZE back. */
async function transfer(open: Opener, direction: 'up' | 'down'): Promise<number> {
  const stream = await open();
  const started = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    let received = 0;
    stream.on('data', (c: Buffer) => {
      received += c.length;
    });
    stream.once('end', () =>
      received >= (direction === 'down' ? SIZE : 1) ? resolve() : reject(new Error('short')),
    );
    stream.once('error', reject);
    if (direction === 'up') writePattern(stream, SIZE, () => stream.end());
    else stream.end();
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  stream.destroy();
  return SIZE / MIB / seconds;
}

async function main() {
  const pki = await createTestPki();
  const db = await freshDatabase();
  const upSink = await startHashSink(0);
  const downSink = await startHashSink(SIZE);
  const agent = await pki.agent('bench-agent');
  const tls: ClientTls = { caPath: pki.caCertPath, agent };
  await grantBenchAgent(db.sql, agent, 'bench-agent', [
    `127.0.0.1:${upSink.port}`,
    `127.0.0.1:${downSink.port}`,
  ]);
  const config = await writeBenchGatewayConfig(pki, db.url);
  const gateway = await startGatewayProcess(config);

  const { child: relay, port: relayPort } = await startBareRelay({
    certPath: pki.serverCertPath,
    keyPath: pki.serverKeyPath,
    uploadPort: upSink.port,
    downloadPort: downSink.port,
  });

  const openRelay =
    (which: 'u' | 'd'): Opener =>
    () =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({
          host: '127.0.0.1',
          port: relayPort,
          ca: readFileSync(pki.caCertPath),
          cert: readFileSync(agent.certPath),
          key: readFileSync(agent.keyPath),
          servername: 'localhost',
        });
        s.once('secureConnect', () => {
          s.write(which);
          resolve(s);
        });
        s.once('error', reject);
      });
  const openH1 =
    (port: number): Opener =>
    async () => {
      const r = await http1Connect(gateway.port, tls, `127.0.0.1:${port}`);
      if (r.status !== 200) throw new Error(`CONNECT ${r.status}`);
      r.socket.resume();
      return r.socket;
    };
  const session = await h2Session(gateway.port, tls);
  const openH2 =
    (port: number): Opener =>
    async () => {
      const r = await h2Connect(session, `127.0.0.1:${port}`);
      if (r.status !== 200) throw new Error(`CONNECT ${r.status}`);
      return r.stream;
    };

  const cases: Array<[string, Opener, Opener]> = [
    ['bare TLS relay', openRelay('u'), openRelay('d')],
    ['gateway HTTP/1.1', openH1(upSink.port), openH1(downSink.port)],
    ['gateway HTTP/2', openH2(upSink.port), openH2(downSink.port)],
  ];
  const results = new Map<string, { up: number[]; down: number[] }>();
  for (const [name] of cases) results.set(name, { up: [], down: [] });
  // Interleave the cases run by run, so drift in machine load hits them alike.
  for (let run = 0; run < RUNS; run++) {
    for (const [name, up, down] of cases) {
      results.get(name)!.up.push(await transfer(up, 'up'));
      results.get(name)!.down.push(await transfer(down, 'down'));
    }
  }
  const base = results.get('bare TLS relay')!;
  console.log(`\nOne tunnel, ${SIZE / MIB} MiB, median of ${RUNS} runs (MB/s = MiB/s)`);
  console.log('| path | upload MiB/s | download MiB/s | upload / bare | download / bare |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const [name, r] of results) {
    const u = median(r.up);
    const d = median(r.down);
    console.log(
      `| ${name} | ${u.toFixed(0)} (${Math.min(...r.up).toFixed(0)}–${Math.max(...r.up).toFixed(0)}) | ${d.toFixed(0)} (${Math.min(...r.down).toFixed(0)}–${Math.max(...r.down).toFixed(0)}) | ${(u / median(base.up)).toFixed(2)} | ${(d / median(base.down)).toFixed(2)} |`,
    );
  }

  // CONNECT→200 on the existing HTTP/2 connection: sequential, so each sample is one full decision
  // (registry query + signature check + vet + dial).
  const latencies: number[] = [];
  for (let i = 0; i < CONNECTS; i++) {
    const t0 = process.hrtime.bigint();
    const r = await h2Connect(session, `127.0.0.1:${upSink.port}`);
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (r.status !== 200) throw new Error(`CONNECT ${r.status}`);
    r.stream.close();
  }
  console.log(
    `\nCONNECT→200 on an existing HTTP/2 connection, ${CONNECTS} sequential: p50 ${percentile(latencies, 50).toFixed(3)} ms, p99 ${percentile(latencies, 99).toFixed(3)} ms`,
  );

  session.close();
  relay.kill('SIGTERM');
  await gateway.stop();
  await upSink.close();
  await downSink.close();
  await db.drop();
  await pki.cleanup();
}

await main();
