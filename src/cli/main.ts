#!/usr/bin/env -S node --disable-sigusr1
/**
 * The `agent-gateway` executable. It checks the runtime before anything else is loaded: the program's
 * own modules (and their dependencies) are imported only afterwards, so an unsupported Node gets this
 * explanation instead of a syntax or import error from deep inside a dependency.
 *
 * `--disable-sigusr1` in the shebang: without it SIGUSR1 opens the inspector on 127.0.0.1:9229 inside a
 * process that holds the TLS key and the registry URL. Launches that bypass the shebang
 * (`node dist/cli/main.js`) are covered by a SIGUSR1 listener, installed here before anything else runs;
 * `serve` and `sidecar` add their logging ones (process/reload-signals.ts).
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
