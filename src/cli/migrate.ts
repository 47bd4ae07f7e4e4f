import postgres from 'postgres';
import {
  DASHBOARD_ROLE,
  ensureRole,
  GATEWAY_ROLE,
  GatewayRoleError,
  gatewayRoleNameProblem,
  type RoleSpec,
} from '../registry/gateway-role.js';
import { migrate } from '../registry/migrate.js';
import { resolveDatabaseUrl } from './database-url.js';

export interface MigrateOptions {
  readonly databaseUrl?: string;
  /** Also create (or bring up to date) the gateway's read-only role of this name. */
  readonly gatewayRole?: string;
  /** The environment variable holding that role's password (never a flag). */
  readonly passwordEnv?: string;
  /** Also create (or bring up to date) the dashboard's role: read the registry, revoke through functions. */
  readonly dashboardRole?: string;
  readonly dashboardPasswordEnv?: string;
}

/**
 * `agent-gateway migrate`: bring the registry schema to this version, or explain why not; with
 * `--gateway-role`, then make sure the gateway's read-only role exists with exactly its grants.
 */
export async function runMigrate(
  opts: MigrateOptions,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const url = resolveDatabaseUrl(opts.databaseUrl, env);
  if (!url.ok) {
    process.stderr.write(`${url.message}\n`);
    return 2;
  }
  const roles: Array<{ spec: RoleSpec; request: { name: string; password?: string } }> = [];
  for (const [spec, flag, name, passwordEnv] of [
    [GATEWAY_ROLE, '--gateway-role', opts.gatewayRole, opts.passwordEnv],
    [DASHBOARD_ROLE, '--dashboard-role', opts.dashboardRole, opts.dashboardPasswordEnv],
  ] as const) {
    const passwordFlag = spec === GATEWAY_ROLE ? '--password-env' : '--dashboard-password-env';
    const role = roleRequest(flag, passwordFlag, name, passwordEnv, env);
    if (!role.ok) {
      process.stderr.write(`agent-gateway migrate: ${role.message}\n`);
      return 2;
    }
    if (role.value !== undefined) roles.push({ spec, request: role.value });
  }
  if (roles.length === 2 && opts.gatewayRole === opts.dashboardRole) {
    process.stderr.write(
      'agent-gateway migrate: --gateway-role and --dashboard-role must name different roles (the gateway must not revoke)\n',
    );
    return 2;
  }
  const sql = postgres(url.value, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    const result = await migrate(sql);
    process.stdout.write(
      result.applied.length === 0
        ? `registry is at schema version ${result.to}; nothing to apply\n`
        : `registry migrated from version ${result.from} to ${result.to}: applied ${result.applied.join(', ')}\n`,
    );
    const ext = result.extension;
    process.stdout.write(
      ext.applied.length === 0
        ? `extension agent_gateway_ext is at version ${ext.to}; nothing to apply\n`
        : `extension agent_gateway_ext migrated from version ${ext.from} to ${ext.to}: applied ${ext.applied.join(', ')}\n`,
    );
    for (const { spec, request } of roles) {
      const done = await ensureRole(sql, spec, request);
      const password = done.passwordSet
        ? 'password set'
        : done.created
          ? 'no password set'
          : 'password unchanged';
      process.stdout.write(
        `${spec.kind} role ${done.role}: ${done.created ? 'created' : 'already exists'} (LOGIN, no other attribute), ` +
          `${password}\n` +
          done.granted.map((g) => `  granted ${g}\n`).join('') +
          done.skipped.map((g) => `  skipped ${g}\n`).join(''),
      );
    }
    return 0;
  } catch (err) {
    process.stderr.write(`agent-gateway migrate: ${(err as Error).message}\n`);
    return err instanceof GatewayRoleError && err.badInput ? 2 : 1;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

type RoleRequest =
  | { ok: true; value: { name: string; password?: string } | undefined }
  | { ok: false; message: string };

function roleRequest(
  flag: string,
  passwordFlag: string,
  name: string | undefined,
  passwordEnv: string | undefined,
  env: NodeJS.ProcessEnv,
): RoleRequest {
  if (name === undefined) {
    return passwordEnv === undefined
      ? { ok: true, value: undefined }
      : { ok: false, message: `${passwordFlag} is the password of ${flag}: pass both or neither` };
  }
  const problem = gatewayRoleNameProblem(name);
  if (problem !== undefined) return { ok: false, message: `${flag}: ${problem}` };
  if (passwordEnv === undefined) return { ok: true, value: { name } };
  const password = env[passwordEnv];
  if (password === undefined || password === '') {
    return {
      ok: false,
      message: `${passwordFlag}: environment variable ${passwordEnv} is not set or is empty; export it with the role's password first`,
    };
  }
  return { ok: true, value: { name, password } };
}
