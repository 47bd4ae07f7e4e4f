import { Command, InvalidArgumentError } from 'commander';
import { registerDashboardCommand } from '../dashboard/command.js';
import { registerSidecarCommand } from '../sidecar/cli.js';
import { packageVersion } from '../version.js';
import { registerAdminCommands } from './admin/register.js';
import { runCheckConfig } from './check-config.js';
import { registerDemoCommand } from './demo/command.js';
import { registerExfilTestCommand } from './exfil-test.js';
import { runMigrate } from './migrate.js';
import { runServe } from './serve.js';
import { registerTunnelCommands } from './tunnels.js';

/**
 * The `agent-gateway` command. Each subcommand returns its exit code; bad arguments and bad config
 * exit 2, a failure to do the work exits 1.
 */
const program = new Command()
  .name('agent-gateway')
  .description(
    'mTLS CONNECT egress gateway for AI agents, authorized by signed permission rows in PostgreSQL',
  )
  .version(packageVersion(), '-V, --version', 'print the agent-gateway version')
  .showHelpAfterError()
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

program
  .command('serve')
  .description('run the gateway')
  .option('-c, --config <file>', 'configuration file (TOML)', 'config.toml')
  // Exit explicitly once serve has drained and flushed its logs: a peer that never finished its
  // handshake must not keep the process alive after shutdown.
  .action(async (opts: { config: string }) => process.exit(await runServe(opts.config)));

program
  .command('check-config')
  .description('validate a configuration file and print the effective configuration (secrets redacted)')
  .option('-c, --config <file>', 'configuration file (TOML)', 'config.toml')
  .action(async (opts: { config: string }) =>
    exit(
      await runCheckConfig(
        opts.config,
        (s) => process.stdout.write(s),
        (s) => process.stderr.write(s),
      ),
    ),
  );

program
  .command('migrate')
  .description(
    'apply migrations/*.sql to the registry database (idempotent; refuses a newer database); with ' +
      '--gateway-role, also create the LOGIN role the gateway connects as, with SELECT on the registry tables only',
  )
  .option(
    '--database-url <url>',
    'PostgreSQL URL (default: $AGENT_GATEWAY_DATABASE_URL)',
    nonEmpty('--database-url'),
  )
  .option(
    '--gateway-role <name>',
    "create or update the gateway's read-only role (idempotent; refuses a role that can write the registry)",
    nonEmpty('--gateway-role'),
  )
  .option(
    '--password-env <var>',
    "environment variable holding that role's password (stored as a SCRAM verifier; without it no password is set)",
    nonEmpty('--password-env'),
  )
  .option(
    '--dashboard-role <name>',
    "create or update the dashboard's role: SELECT on the registry, revocation only through the extension's functions",
    nonEmpty('--dashboard-role'),
  )
  .option(
    '--dashboard-password-env <var>',
    "environment variable holding the dashboard role's password",
    nonEmpty('--dashboard-password-env'),
  )
  .action(
    async (opts: {
      databaseUrl?: string;
      gatewayRole?: string;
      passwordEnv?: string;
      dashboardRole?: string;
      dashboardPasswordEnv?: string;
    }) => exit(await runMigrate(opts)),
  );

registerSidecarCommand(program);
registerAdminCommands(program);
registerTunnelCommands(program);
registerDashboardCommand(program);
registerExfilTestCommand(program);
registerDemoCommand(program);

function nonEmpty(flag: string) {
  return (value: string): string => {
    if (value.trim() === '') throw new InvalidArgumentError(`${flag} must not be empty`);
    return value;
  };
}

function exit(code: number): void {
  process.exitCode = code;
}

await program.parseAsync(process.argv);
