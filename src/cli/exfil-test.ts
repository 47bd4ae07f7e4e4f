import { readFile } from 'node:fs/promises';
import { type Command, InvalidArgumentError } from 'commander';
import { ConfigError } from '../config/errors.js';
import { ListenAddrError, parseListenAddr } from '../config/listen-addr.js';
import { limitsFor, uploadSpec } from '../config/rate-limit.js';
import { formatReport } from '../exfil/report.js';
import { type ExfilBudget, runExfilTest } from '../exfil/run.js';
import { startCountingSink } from '../exfil/sink.js';
import { STRATEGIES } from '../exfil/strategies.js';
import { leaseSize } from '../ratelimit/lease-size.js';
import { readRateLimitSettings } from './rate-limit-file.js';

export interface ExfilFlags {
  readonly gateway: string;
  readonly gatewayCa: string;
  readonly serverName?: string;
  readonly cert: string;
  readonly key: string;
  readonly sinkListen: string;
  readonly sinkAuthority?: string;
  readonly config?: string;
  readonly identity?: string;
  readonly rate?: number;
  readonly burst?: number;
  readonly gateways: number;
  readonly lease?: number;
  readonly seconds: number;
  readonly windows: readonly number[];
  readonly slackMs: number;
  readonly only?: readonly string[];
}

/**
 * 50 ms of the rate: on a 2-core host shared by the client, the gateway, PostgreSQL and the sink, the
 * sink's reads were seen delayed by 30 ms and then delivered together, which makes 0.1 s windows look up
 * to that much fuller than the gateway sent them (1 s windows hardly notice).
 */
const DEFAULT_SLACK_MS = 50;

/** Adds `agent-gateway exfil-test`. */
export function registerExfilTestCommand(program: Command): void {
  program
    .command('exfil-test')
    .description(
      "try to move more of one identity's bytes through a running gateway than its upload budget allows " +
        '(1-64 tunnels, both protocols, one or many TLS connections, churn, pipelining, half-close, ' +
        'reconnects); counts what a sink receives per sliding window; exit 1 if any window holds more ' +
        'than rate x W + burst (+ gateways x lease)',
    )
    .requiredOption('--gateway <host:port>', 'the gateway to test')
    .requiredOption('--gateway-ca <file>', "PEM CA certificate of the gateway's certificate")
    .option('--server-name <name>', "name to check in the gateway's certificate (default: --gateway's host)")
    .requiredOption('--cert <file>', "the test identity's agent certificate (PEM)")
    .requiredOption('--key <file>', 'its private key (PEM, unencrypted)')
    .option(
      '--sink-listen <host:port>',
      'where the sink listens; the identity needs a permission for it (port 0: any free port)',
      '127.0.0.1:0',
    )
    .option(
      '--sink-authority <host:port>',
      'the destination to CONNECT to, if the gateway reaches the sink by another name',
    )
    .option(
      '--config <file>',
      "the gateway's config: the identity's rate and burst (and lease, if shared) come from its [rate_limit]",
    )
    .option('--identity <id>', 'with --config: the identity of --cert')
    .option(
      '--rate <bytes>',
      'without --config: the identity upload rate in bytes per second',
      positive('--rate'),
    )
    .option('--burst <bytes>', 'without --config: its burst in bytes', positive('--burst'))
    .option(
      '--gateways <n>',
      'gateway processes sharing the budget (G in rate x W + burst + G x L)',
      positive('--gateways'),
      1,
    )
    .option(
      '--lease <bytes>',
      'the largest lease one gateway holds (default: from --config when shared, else 0)',
      nonNegative('--lease'),
    )
    .option('--seconds <s>', 'how long each strategy runs', positive('--seconds'), 10)
    .option(
      '--windows <list>',
      'window lengths in seconds to judge, comma-separated',
      windowList,
      [0.1, 1, 10],
    )
    .option(
      '--slack-ms <ms>',
      'measurement slack: sink reads delayed by a busy host, as ms of the rate',
      nonNegative('--slack-ms'),
      DEFAULT_SLACK_MS,
    )
    .option(
      '--only <names>',
      `strategies to run, comma-separated (${STRATEGIES.map((s) => s.name).join(', ')})`,
      nameList,
    )
    .action(async (flags: ExfilFlags) => {
      process.exitCode = await runExfilCommand(
        flags,
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s),
      );
    });
}

export async function runExfilCommand(
  flags: ExfilFlags,
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  let prepared: Awaited<ReturnType<typeof prepare>>;
  try {
    prepared = await prepare(flags);
  } catch (e) {
    err(`agent-gateway exfil-test: ${(e as Error).message}\n`);
    return 2;
  }
  const { budget, endpoint, strategies, sinkAddr } = prepared;
  const sink = await startCountingSink(sinkAddr.host, sinkAddr.port).catch((e: unknown) => {
    err(`agent-gateway exfil-test: cannot listen on ${flags.sinkListen}: ${(e as Error).message}\n`);
    return undefined;
  });
  if (sink === undefined) return 1;
  const authority =
    flags.sinkAuthority ?? `${sink.host.includes(':') ? `[${sink.host}]` : sink.host}:${sink.port}`;
  out(`sink listening on ${authority}; ${strategies.length} strategies, ${flags.seconds} s each\n`);
  try {
    const results = await runExfilTest({
      endpoint,
      sink,
      authority,
      budget,
      seconds: flags.seconds,
      windowsS: flags.windows,
      strategies,
      progress: (line) => err(`${line}\n`),
    });
    out(
      formatReport(
        budget,
        flags.windows.filter((w) => w <= flags.seconds),
        results,
      ),
    );
    return results.every((r) => r.ok) ? 0 : 1;
  } finally {
    await sink.close();
  }
}

async function prepare(flags: ExfilFlags) {
  let gateway: { host: string; port: number };
  let sinkAddr: { host: string; port: number };
  try {
    gateway = parseListenAddr(flags.gateway);
    sinkAddr = parseListenAddr(flags.sinkListen);
  } catch (e) {
    if (e instanceof ListenAddrError) throw new Error(e.message);
    throw e;
  }
  if (gateway.port === 0) throw new Error('--gateway needs a port');
  const budget = await resolveBudget(flags);
  const strategies =
    flags.only === undefined ? STRATEGIES : STRATEGIES.filter((s) => flags.only!.includes(s.name));
  const unknown = (flags.only ?? []).filter((n) => !STRATEGIES.some((s) => s.name === n));
  if (unknown.length > 0) throw new Error(`--only: unknown strategies ${unknown.join(', ')}`);
  const [ca, cert, key] = await Promise.all(
    [flags.gatewayCa, flags.cert, flags.key].map((f) =>
      readFile(f).catch((e: unknown) => {
        throw new Error(`cannot read ${f}: ${(e as Error).message}`);
      }),
    ),
  );
  const endpoint = {
    host: gateway.host,
    port: gateway.port,
    serverName: flags.serverName ?? gateway.host,
    ca: ca!,
    cert: cert!,
    key: key!,
  };
  return { budget, endpoint, strategies, sinkAddr };
}

/** rate, burst and L from the gateway's config for the identity, or from the flags. */
async function resolveBudget(flags: ExfilFlags): Promise<ExfilBudget> {
  const common = { gateways: flags.gateways, slackMs: flags.slackMs };
  if (flags.config !== undefined) {
    if (flags.identity === undefined) throw new Error('--config needs --identity (the identity of --cert)');
    let settings: Awaited<ReturnType<typeof readRateLimitSettings>>;
    try {
      settings = await readRateLimitSettings(flags.config);
    } catch (e) {
      if (e instanceof ConfigError) throw new Error(e.message);
      throw e;
    }
    const spec = uploadSpec(limitsFor(settings, flags.identity));
    if (spec.bytesPerSecond === 0) {
      throw new Error(`${flags.identity} has no upload rate in ${flags.config}: there is no budget to test`);
    }
    return {
      ...common,
      bytesPerSecond: spec.bytesPerSecond,
      burstBytes: spec.burstBytes,
      leaseBytes: flags.lease ?? (settings.shared ? leaseSize(spec) : 0),
    };
  }
  if (flags.rate === undefined || flags.burst === undefined) {
    throw new Error('give --rate and --burst, or --config and --identity');
  }
  return { ...common, bytesPerSecond: flags.rate, burstBytes: flags.burst, leaseBytes: flags.lease ?? 0 };
}

function positive(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${flag} must be a number > 0`);
    return n;
  };
}

function nonNegative(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${flag} must be a number >= 0`);
    return n;
  };
}

function windowList(value: string): number[] {
  const list = value.split(',').map((v) => Number(v.trim()));
  if (list.length === 0 || list.some((n) => !Number.isFinite(n) || n <= 0)) {
    throw new InvalidArgumentError('--windows must be positive numbers of seconds, e.g. 0.1,1,10');
  }
  return list;
}

function nameList(value: string): string[] {
  return value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v !== '');
}
