import type { Command } from 'commander';
import { processIo, runCommand } from './admin/action.js';
import { usageError } from './admin/errors.js';
import { printList } from './admin/table.js';
import { ADMIN_URL_ENV, adminCall, adminEndpoint, DEFAULT_TOKEN_ENV } from './admin-client.js';

interface EndpointFlags {
  adminUrl?: string;
  tokenEnv?: string;
  adminCa?: string;
}

interface Selector {
  identity?: string;
  permissionId?: string;
  signingKeyId?: string;
  tunnelId?: string;
}

/**
 * `agent-gateway tunnels list|close`: the open tunnels of a running gateway, through its admin listener.
 * `close` is the kill switch for an incident: it ends the tunnels now without revoking anything.
 */
export function registerTunnelCommands(program: Command): void {
  const tunnels = program
    .command('tunnels')
    .description("a running gateway's open tunnels (through its admin listener)");
  const endpointFlags = (c: Command) =>
    c
      .option('--admin-url <url>', `the gateway's admin listener (default: $${ADMIN_URL_ENV})`)
      .option(
        '--token-env <name>',
        'environment variable holding the admin or read-only token',
        DEFAULT_TOKEN_ENV,
      )
      .option('--admin-ca <file>', 'CA certificate(s) of an https admin listener');
  const selectorFlags = (c: Command) =>
    c
      .option('--identity <id>', 'the tunnels of this agent identity')
      .option('--permission-id <id>', 'the tunnels this permission admitted')
      .option('--signing-key-id <id>', 'the tunnels of permissions this principal key signed')
      .option('--tunnel-id <id>', 'one tunnel (its id from `tunnels list` or the log)');

  selectorFlags(
    endpointFlags(tunnels.command('list').description('list open tunnels (read-only role is enough)')),
  )
    .option('--json', 'print JSON')
    .action(async (opts: EndpointFlags & Selector & { json?: boolean }) => {
      process.exitCode = await runCommand('tunnels list', processIo, async () => {
        const endpoint = await adminEndpoint(opts, processIo.env);
        const selector = selectorOf(opts, false);
        const query = selector === undefined ? '' : `?${new URLSearchParams(selector).toString()}`;
        const answer = await adminCall(endpoint, 'GET', `/v1/tunnels${query}`);
        const rows = (answer['tunnels'] ?? []) as Array<Record<string, unknown>>;
        printList(
          processIo,
          opts.json,
          rows,
          ['TUNNEL', 'IDENTITY', 'DESTINATION', 'PROTOCOL', 'AGE', 'UP', 'DOWN', 'PERMISSION', 'SIGNER'],
          (t) => [
            String(t['tunnel_id']),
            String(t['source_identity']),
            String(t['dest_authority']),
            String(t['protocol']),
            age(Number(t['age_ms'])),
            String(t['bytes_client_to_dest']),
            String(t['bytes_dest_to_client']),
            String(t['permission_id']),
            String(t['signing_key_id']),
          ],
        );
      });
    });

  selectorFlags(
    endpointFlags(
      tunnels.command('close').description('close open tunnels now (admin role); revokes nothing'),
    ),
  ).action(async (opts: EndpointFlags & Selector) => {
    process.exitCode = await runCommand('tunnels close', processIo, async () => {
      const selector = selectorOf(opts, true);
      const endpoint = await adminEndpoint(opts, processIo.env);
      const answer = await adminCall(endpoint, 'POST', '/v1/tunnels/close', selector);
      processIo.out(`closed: ${String(answer['closed'])}\n`);
    });
  });
}

function selectorOf(opts: Selector, required: true): Record<string, string>;
function selectorOf(opts: Selector, required: false): Record<string, string> | undefined;
function selectorOf(opts: Selector, required: boolean): Record<string, string> | undefined {
  const given: Array<[string, string]> = [];
  if (opts.identity !== undefined) given.push(['identity', opts.identity]);
  if (opts.permissionId !== undefined) given.push(['permission_id', opts.permissionId]);
  if (opts.signingKeyId !== undefined) given.push(['signing_key_id', opts.signingKeyId]);
  if (opts.tunnelId !== undefined) given.push(['tunnel_id', opts.tunnelId]);
  if (given.length > 1 || (required && given.length === 0)) {
    throw usageError('give exactly one of --identity, --permission-id, --signing-key-id, --tunnel-id');
  }
  return given.length === 0 ? undefined : Object.fromEntries(given);
}

function age(ms: number): string {
  if (!Number.isFinite(ms)) return '?';
  const s = Math.floor(ms / 1000);
  return s < 60
    ? `${s}s`
    : s < 3600
      ? `${Math.floor(s / 60)}m${s % 60}s`
      : `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}
