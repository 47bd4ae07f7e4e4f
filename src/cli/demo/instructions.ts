import { isAbsolute, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DemoAgent, DemoPki } from './pki.js';

export interface DemoEndpoints {
  readonly stateDir: string;
  readonly gatewayPort: number;
  readonly targetPort: number;
  readonly postgresPort: number;
  /** Where the database really is, and whether it outlives this run (see devdb/embedded.ts). */
  readonly postgresDataDir: string;
  readonly postgresPersistent: boolean;
  readonly logPath: string;
  readonly databaseUrlPath: string;
  readonly dashboard: {
    readonly url: string;
    readonly adminToken: string;
    readonly readonlyToken: string;
    readonly logPath: string;
  };
  readonly setupNotes: readonly string[];
  readonly startupMs: number;
}

const H2_SCRIPT = fileURLToPath(new URL('./h2-get.js', import.meta.url));
const CLI_SCRIPT = fileURLToPath(new URL('../cli/main.js', import.meta.url));

/**
 * What the demo prints once everything runs. Every command is ready to paste: each `curl` line starts with
 * `curl ` (the first succeeds, the second gets 403), paths are relative to the working directory when they
 * lie below it, and anything a shell could misread is quoted.
 */
export function demoInstructions(pki: DemoPki, e: DemoEndpoints): string {
  const proxy = `https://127.0.0.1:${e.gatewayPort}`;
  const url = `http://127.0.0.1:${e.targetPort}/`;
  const tlsFlags = (agent: DemoAgent) => [
    '--proxy-cacert',
    shown(pki.caCertPath),
    '--proxy-cert',
    shown(agent.certPath),
    '--proxy-key',
    shown(agent.keyPath),
  ];
  const curl = (agent: DemoAgent) => command(['curl', '--proxy', proxy, ...tlsFlags(agent), '-p', url]);
  const h2 = command(['node', shown(H2_SCRIPT), '--proxy', proxy, ...tlsFlags(pki.granted), url]);
  const cli = command([shown(process.execPath), shown(CLI_SCRIPT), 'permission', 'list']);
  return [
    '',
    `agent-gateway demo is running (ready in ${(e.startupMs / 1000).toFixed(1)} s; state in ${shown(e.stateDir)}, reused by the next run)`,
    ...e.setupNotes.map((n) => `  setup: ${n}`),
    '',
    `  gateway      ${proxy}  (mTLS; HTTP/1.1 and HTTP/2 CONNECT)`,
    `  destination  ${url}  (a web server inside this demo)`,
    `  registry     embedded PostgreSQL on 127.0.0.1:${e.postgresPort}, data in ${shown(e.postgresDataDir)}` +
      (e.postgresPersistent ? '' : ' (deleted when the demo stops)'),
    `  logs         ${shown(e.logPath)}  (gateway JSON lines: one per CONNECT decision and per closed tunnel)`,
    `  dashboard    ${e.dashboard.url}/  (decisions, tunnels, bandwidth, the registry; close and revoke)`,
    `    log in with the admin token      ${e.dashboard.adminToken}`,
    `    or the read-only token           ${e.dashboard.readonlyToken}`,
    `    (demo tokens, new on every run; the dashboard's log is ${shown(e.dashboard.logPath)})`,
    '',
    `${pki.granted.identity} holds a permission signed for 127.0.0.1:${e.targetPort}, so this succeeds:`,
    curl(pki.granted),
    '',
    `${pki.refused.identity} holds none, so the gateway refuses it with 403 (curl: "CONNECT tunnel failed, response 403"):`,
    curl(pki.refused),
    '',
    'HTTP/2 CONNECT (curl before 8.1 speaks only HTTP/1.1 to a proxy); add --streams 5 for five tunnels on one connection:',
    h2,
    '',
    'Follow the gateway log:',
    `  tail -f ${shown(e.logPath)}`,
    'Look at the registry with the CLI (revoke the permission and the first curl gets 403 too):',
    `  export AGENT_GATEWAY_DATABASE_URL="$(cat ${shown(e.databaseUrlPath)})"`,
    `  ${cli}`,
    '',
    'Press Ctrl-C to stop.',
    '',
  ].join('\n');
}

/** A path relative to the working directory when it lies below it, else absolute. */
function shown(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : path;
}

function command(words: string[]): string {
  return words.map(quote).join(' ');
}

function quote(word: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
