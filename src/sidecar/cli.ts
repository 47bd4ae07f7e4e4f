import type { Command } from 'commander';
import { ConfigError } from '../config/errors.js';
import { parseTomlText, readConfigFile } from '../config/load.js';
import { createLogger, flushLogger, type Logger } from '../observability/logger.js';
import { Pkcs11Error } from '../pkcs11/errors.js';
import { defaultEnginePath, PKCS11_MODULE_ENV } from '../pkcs11/settings.js';
import { handleReloadAndIgnoredSignals } from '../process/reload-signals.js';
import { deferStopSignals } from '../process/stop-signals.js';
import { type AgentCredentials, loadAgentCredentials } from './agent-credentials.js';
import {
  DEFAULT_SIDECAR_LISTEN,
  isLoopbackHost,
  resolveSidecarConfig,
  type SidecarConfig,
} from './config.js';
import { SidecarEvent } from './events.js';
import { type RunningSidecar, startSidecar } from './sidecar.js';

/** Command-line flags, as commander names them. */
export interface SidecarFlags {
  readonly config?: string;
  readonly gateway?: string;
  readonly gatewayCa?: string;
  readonly gatewayServerName?: string;
  readonly cert?: string;
  readonly key?: string;
  readonly keyPassphraseEnv?: string;
  readonly pinEnv?: string;
  readonly pkcs11Module?: string;
  readonly pkcs11Engine?: string;
  readonly clientExtOid?: string;
  readonly listen?: string;
  readonly allowNonLoopback?: boolean;
  readonly unixSocket?: string;
  readonly unixSocketMode?: string;
  readonly proxyAuthEnv?: string;
  readonly logLevel?: string;
  readonly shutdownGraceS?: string;
  readonly adminListen?: string;
  readonly adminTokenEnv?: string;
  readonly otlpEndpoint?: string;
  readonly otlpProtocol?: string;
}

/** Adds `agent-gateway sidecar` to the CLI. */
export function registerSidecarCommand(program: Command): void {
  program
    .command('sidecar')
    .description(
      "run next to an agent: a local HTTP proxy (HTTPS_PROXY/HTTP_PROXY) that carries the agent's tunnels " +
        'over one mTLS HTTP/2 connection to the gateway, holding the agent key itself',
    )
    .option(
      '-c, --config <file>',
      'sidecar configuration file (TOML with a [sidecar] table); flags override it',
    )
    .option('--gateway <host:port>', 'the gateway TLS address (sidecar.gateway_addr)')
    .option(
      '--gateway-ca <file>',
      "PEM CA certificate that signs the gateway's certificate (sidecar.gateway_ca_path)",
    )
    .option(
      '--gateway-server-name <name>',
      "name to verify in the gateway's certificate (default: gateway host)",
    )
    .option('--cert <file>', 'agent certificate, PEM (sidecar.cert_path)')
    .option(
      '--key <file|uri>',
      'agent private key: a PEM file, or a PKCS#11 URI pkcs11:token=…;object=… of a token key (sidecar.key_path)',
    )
    .option('--key-passphrase-env <VAR>', 'environment variable holding the passphrase of an encrypted key')
    .option('--pin-env <VAR>', "for a pkcs11: key, environment variable holding the token's user PIN")
    .option(
      '--pkcs11-module <path>',
      `for a pkcs11: key, the token's PKCS#11 library (default $${PKCS11_MODULE_ENV})`,
    )
    .option(
      '--pkcs11-engine <path>',
      `OpenSSL's PKCS#11 engine TLS uses the token key through (default ${defaultEnginePath()})`,
    )
    .option(
      '--client-ext-oid <oid>',
      'identity extension OID to check the certificate for (default 1.3.6.1.4.1.57264.1.1)',
    )
    .option('--listen <host:port>', `local proxy address (default ${DEFAULT_SIDECAR_LISTEN}; loopback only)`)
    .option('--allow-non-loopback', 'allow a --listen address that other hosts can reach')
    .option('--unix-socket <path>', 'also (or, without --listen, only) listen on this Unix socket')
    .option('--unix-socket-mode <octal>', 'permissions of the Unix socket file (default 600)')
    .option(
      '--proxy-auth-env <VAR>',
      'environment variable holding user:password that local clients must send',
    )
    .option('--log-level <level>', 'trace, debug, info, warn, error or fatal (default info)')
    .option('--shutdown-grace-s <seconds>', 'on SIGTERM, how long open tunnels may finish (default 10)')
    .option(
      '--admin-listen <host:port>',
      'loopback address serving /metrics (token) and /healthz (sidecar.admin_listen_addr)',
    )
    .option(
      '--admin-token-env <VAR>',
      'environment variable holding the /metrics bearer token (default AGENT_GATEWAY_SIDECAR_ADMIN_TOKEN)',
    )
    .option('--otlp-endpoint <url>', "OTLP collector for the sidecar's spans (sidecar.otlp_endpoint)")
    .option(
      '--otlp-protocol <protocol>',
      'grpc (default), http/protobuf or http/json (sidecar.otlp_protocol)',
    )
    // Exit explicitly once drained and logs are flushed: a local client that never closes its side of a
    // refused connection must not keep the process alive after shutdown.
    .action(async (flags: SidecarFlags) => process.exit(await runSidecar(flags)));
}

/**
 * Loads and checks the configuration and the agent's TLS files (exit 2 on a problem), starts the
 * listeners (exit 1 if they cannot bind), re-reads the CA, certificate and key on SIGHUP (a bad file is
 * logged and the old credentials kept), ignores SIGUSR1/SIGUSR2, and on SIGINT/SIGTERM drains and exits 0.
 */
export async function runSidecar(flags: SidecarFlags, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let config: SidecarConfig;
  const source = flags.config ?? 'none, command-line flags only';
  try {
    config = resolveSidecarConfig({
      fileDocument: flags.config === undefined ? undefined : await readToml(flags.config),
      source,
      overrides: overridesFrom(flags),
      env,
    });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`agent-gateway sidecar: ${error.message}\n`);
    return 2;
  }
  const logger = createLogger(config.logLevel).child({ component: 'sidecar' });
  // Before the slow part (a token login, the listeners): SIGHUP, SIGUSR1 and SIGUSR2 must not kill the
  // process in the gap; a SIGHUP then reloads once the sidecar runs.
  const signals = handleReloadAndIgnoredSignals<RunningSidecar>({
    log: (signal, what) =>
      logger.info({ signal }, what === 'ignored' ? SidecarEvent.signalIgnored : SidecarEvent.signalReceived),
    reload: (sidecar) => reloadCredentials(config, source, sidecar, logger),
    reloadCrashed: (error) =>
      logger.error({ problems: [String(error)] }, SidecarEvent.credentialsReloadFailed),
  });
  let credentials: AgentCredentials;
  try {
    credentials = await loadAgentCredentials(config, source);
  } catch (error) {
    signals.cancel();
    const problem = credentialProblem(error);
    process.stderr.write(`agent-gateway sidecar: ${problem.message}\n`);
    return problem.exitCode;
  }
  warnAbout(credentials, logger);
  if (
    config.listen !== undefined &&
    config.proxyCredential === undefined &&
    !isLoopbackHost(config.listen.host)
  ) {
    logger.warn(
      { listen_addr: `${config.listen.host}:${config.listen.port}`, proxy_auth: false },
      SidecarEvent.nonLoopbackListen,
    );
  }
  // A stop signal that arrives between the `listening` line and the end of start-up drains, not kills.
  const early = deferStopSignals();
  let sidecar: RunningSidecar;
  try {
    sidecar = await startSidecar(config, credentials, logger);
    signals.started(sidecar);
  } catch (error) {
    signals.cancel();
    early.cancel();
    credentials.close();
    logger.fatal({ error: (error as Error).message }, SidecarEvent.startupFailed);
    await flushLogger(logger);
    process.stderr.write(`agent-gateway sidecar: cannot start: ${(error as Error).message}\n`);
    return 1;
  }
  return new Promise<number>((resolve) => {
    early.onStop((signal) => {
      logger.info({ signal }, SidecarEvent.signalReceived);
      signals.stopping();
      void sidecar
        .shutdown(config.shutdownGraceMs)
        .then(() => flushLogger(logger))
        .then(() => resolve(0));
    });
  });
}

/**
 * SIGHUP: the same files (and token key) read and checked again as at start. Unusable ones change
 * nothing and are logged with every problem; identical ones are dropped (no new gateway connection);
 * new ones are presented from now on. The config file itself is not read again: a changed path or
 * another setting needs a restart.
 */
async function reloadCredentials(
  config: SidecarConfig,
  source: string,
  sidecar: RunningSidecar,
  logger: Logger,
): Promise<void> {
  let next: AgentCredentials;
  try {
    next = await loadAgentCredentials(config, source);
  } catch (error) {
    const { problems } = credentialProblem(error);
    logger.error({ problems }, SidecarEvent.credentialsReloadFailed);
    return;
  }
  const fields = {
    source_identity: next.identity ?? undefined,
    cert_sha256: next.certSha256,
    key: next.keyDescription,
  };
  if (next.digest === sidecar.credentialsDigest) {
    next.close();
    logger.info({ ...fields, changed: false }, SidecarEvent.credentialsReloaded);
    return;
  }
  warnAbout(next, logger);
  const result = await sidecar.replaceCredentials(next);
  logger.info(
    {
      ...fields,
      changed: true,
      gateway_connection: result.connection,
      gateway_connection_problem: result.connection === 'kept' ? result.reason : undefined,
    },
    SidecarEvent.credentialsReloaded,
  );
}

/** What is wrong with the credentials, for stderr at start and for the reload log line. */
function credentialProblem(error: unknown): { message: string; problems: string[]; exitCode: 1 | 2 } {
  if (error instanceof Pkcs11Error) {
    // Input problems with a token key are ConfigErrors; what reaches here is the device failing.
    const message = `${error.message} [${error.code}]`;
    return { message, problems: [message], exitCode: 1 };
  }
  if (!(error instanceof ConfigError)) throw error;
  return { message: error.message, problems: [...error.problems], exitCode: 2 };
}

function warnAbout(credentials: AgentCredentials, logger: Logger): void {
  for (const warning of credentials.keyWarnings) {
    logger.warn({ warning }, SidecarEvent.keyRevealable);
    process.stderr.write(`agent-gateway sidecar: warning: ${warning}\n`);
  }
  for (const warning of credentials.warnings) {
    logger.warn({ warning }, SidecarEvent.identityMissing);
    process.stderr.write(`agent-gateway sidecar: warning: ${warning}\n`);
  }
}

function overridesFrom(flags: SidecarFlags): Record<string, unknown> {
  return {
    gateway_addr: flags.gateway,
    gateway_ca_path: flags.gatewayCa,
    gateway_server_name: flags.gatewayServerName,
    cert_path: flags.cert,
    key_path: flags.key,
    key_passphrase_env: flags.keyPassphraseEnv,
    pin_env: flags.pinEnv,
    pkcs11_module: flags.pkcs11Module,
    pkcs11_engine: flags.pkcs11Engine,
    client_ext_oid: flags.clientExtOid,
    listen_addr: flags.listen,
    allow_non_loopback: flags.allowNonLoopback,
    unix_socket_path: flags.unixSocket,
    unix_socket_mode: flags.unixSocketMode,
    proxy_auth_env: flags.proxyAuthEnv,
    log_level: flags.logLevel,
    admin_listen_addr: flags.adminListen,
    admin_token_env: flags.adminTokenEnv,
    otlp_endpoint: flags.otlpEndpoint,
    otlp_protocol: flags.otlpProtocol,
    // Numbers arrive as text; a non-number stays text so the schema can say what is wrong with it.
    shutdown_grace_s: /^[0-9]+$/.test(flags.shutdownGraceS ?? '')
      ? Number(flags.shutdownGraceS)
      : flags.shutdownGraceS,
  };
}

async function readToml(path: string): Promise<unknown> {
  return parseTomlText(await readConfigFile(path), path);
}
