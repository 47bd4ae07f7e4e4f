import { type Command, InvalidArgumentError } from 'commander';
import { processIo } from '../admin/action.js';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'run a complete local demo: embedded PostgreSQL, PKI, signed permissions, the gateway and a destination (what `npm start` runs)',
    )
    .option('--state-dir <dir>', 'where the demo keeps its database, keys and logs between runs', '.demo')
    .option('--port <n>', 'gateway port on 127.0.0.1 (default: the last run’s, else a free one)', port)
    .action(async (opts: { stateDir: string; port?: number }) => {
      // Loaded on use: the demo pulls in the whole gateway and the embedded PostgreSQL package.
      const { runDemo } = await import('./demo.js');
      process.exitCode = await runDemo(opts, processIo);
    });
}

function port(value: string): number {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n < 1 || n > 65535) {
    throw new InvalidArgumentError(`--port ${JSON.stringify(value)} must be a port number from 1 to 65535`);
  }
  return n;
}
