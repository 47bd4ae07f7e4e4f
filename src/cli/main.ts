#!/usr/bin/env -S node --disable-sigusr1 --max-semi-space-size=4
/**
 * The `agent-gateway` executable. It checks the runtime before anything else is loaded: the program's
 * own modules (and their dependencies) are imported only afterwards, so an unsupported Node gets this
 * explanation instead of a syntax or import error from deep inside a dependency.
 *
 * `--disable-sigusr1` in the shebang: without it SIGUSR1 opens the inspector on 127.0.0.1:9229 inside a
 * process that holds the TLS key and the registry URL. Launches that bypass the shebang
 * (`node dist/cli/main.js`) are covered by a SIGUSR1 listener, installed here before anything else runs;
 * `serve` and `sidecar` add their logging ones (process/reload-signals.ts).
 *
 * `--max-semi-space-size=4` (MiB): V8's young generation otherwise grows to tens of MiB under the
 * allocation of a burst of handshakes and keeps that memory. Measured with 2,000 idle HTTP/1.1 tunnels on
 * Node 24: the heap held 35 KiB per tunnel before a collection against 10 KiB live, and the process's
 * RSS per tunnel fell from 90-92 to 74-75 KiB with the cap, with no measurable change in throughput or
 * handshake rate (docs/BENCHMARKS.md). Every launcher passes the same flags (test/unit/launch-flags.test.ts).
 */
import { muteInspectorSignal } from '../process/reload-signals.js';
import { runtimeProblem } from './runtime-check.js';

muteInspectorSignal();

const problem = runtimeProblem(process.versions.node, process.env);
if (problem !== undefined) {
  process.stderr.write(`agent-gateway: ${problem}\n`);
  process.exit(2);
}
await import('./program.js');
