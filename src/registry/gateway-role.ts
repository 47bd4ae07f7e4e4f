import type postgres from 'postgres';
import { MIGRATION_LOCK_KEY, versionTableExists } from './migrate.js';
import { scramSha256Verifier } from './scram.js';

/**
 * The database roles that programs of this package connect as: LOGIN, nothing else, and exactly the
 * privileges listed here. The registry is the trust root (README, "Trust model"), so neither the gateway
 * nor the dashboard may write it.
 *
 * These lists are the one place that says what each role may do. An extension that adds tables or
 * functions (under its own schema, `agent_gateway_ext`) adds its grants here, marked `optional` so that a
 * registry without the extension still gets a working role.
 */
export interface TableGrant {
  /** Undefined: the schema the registry tables were migrated into (where agent_gateway_schema_version is). */
  readonly schema?: string;
  readonly table: string;
  readonly privileges: readonly TablePrivilege[];
  /** Skip (and say so) when the table does not exist, instead of failing: for extension tables. */
  readonly optional?: boolean;
}

export type TablePrivilege = 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE';

/** EXECUTE on one function of the extension (its signature as `regprocedure` reads it). */
export interface FunctionGrant {
  readonly schema: string;
  /** `revoke_permission(text)`. */
  readonly signature: string;
  readonly optional?: boolean;
}

const REGISTRY_READS: readonly TableGrant[] = [
  { table: 'agent_gateway_schema_version', privileges: ['SELECT'] },
  { table: 'principal_signing_keys', privileges: ['SELECT'] },
  { table: 'principal_key_permissions', privileges: ['SELECT'] },
  { table: 'permission_registry', privileges: ['SELECT'] },
];

export const GATEWAY_ROLE_GRANTS: readonly TableGrant[] = REGISTRY_READS;

/**
 * The revocation functions of extension version 2 (migrations/extension/0002_dashboard_revocation.sql):
 * each sets revoked_at to now() on one unrevoked row, and nothing else. The dashboard revokes only
 * through them; the gateway's role must never hold them.
 */
export const REVOCATION_FUNCTIONS: readonly FunctionGrant[] = [
  { schema: 'agent_gateway_ext', signature: 'revoke_permission(text)' },
  { schema: 'agent_gateway_ext', signature: 'revoke_signing_key(text)' },
  { schema: 'agent_gateway_ext', signature: 'revoke_scope(bigint)' },
];

/** What one kind of role is granted, and what it must not already hold. */
export interface RoleSpec {
  /** For messages: `gateway`, `dashboard`. */
  readonly kind: string;
  readonly tables: readonly TableGrant[];
  readonly functions: readonly FunctionGrant[];
  /** Functions an existing role must not be able to run (the gateway must not revoke). */
  readonly forbiddenFunctions: readonly FunctionGrant[];
}

const BUDGET = 'agent_gateway_ext';

/**
 * Shared budgets (extension version 3): the role changes budget state only through these SECURITY
 * DEFINER functions, which check their arguments and write only the budget tables; it holds no privilege
 * on any table of the extension, so it cannot set a bucket, a quota or a lease to a value of its choosing
 * (it can only lease, hand back what it leased, and count its own tunnels). The *_at variants, which take
 * the time as an argument, are not granted: the budget is computed on the database clock.
 */
export const GATEWAY_ROLE_FUNCTION_GRANTS: readonly FunctionGrant[] = [
  'budget_lease(text, text, text, double precision, double precision, bigint, integer, bigint, bigint, integer)',
  'budget_return(text, bigint[], bigint[])',
  'budget_tunnel_admit(text, text, integer, integer, bigint, integer, bigint, integer)',
  'budget_tunnel_release(text, text)',
  'budget_sync(text, text[], integer[], integer)',
  'budget_gateway_stop(text)',
  'budget_peek(text, text, double precision, double precision, bigint, integer)',
  'budget_list_identities()',
].map((signature) => ({ schema: BUDGET, signature, optional: true }));

/**
 * `agent-gateway serve`: reads the registry, never writes it, never revokes; with shared budgets it runs
 * the budget functions (which write only the extension's budget tables).
 */
export const GATEWAY_ROLE: RoleSpec = {
  kind: 'gateway',
  tables: GATEWAY_ROLE_GRANTS,
  functions: GATEWAY_ROLE_FUNCTION_GRANTS,
  forbiddenFunctions: REVOCATION_FUNCTIONS,
};

/**
 * `agent-gateway dashboard`: reads the registry (its views and `permission list`'s judgement) and revokes
 * through the extension's functions; it holds no INSERT, UPDATE or DELETE on any registry table.
 */
export const DASHBOARD_ROLE: RoleSpec = {
  kind: 'dashboard',
  tables: [
    ...REGISTRY_READS,
    { schema: 'agent_gateway_ext', table: 'schema_version', privileges: ['SELECT'] },
  ],
  functions: REVOCATION_FUNCTIONS,
  forbiddenFunctions: [],
};

/** The registry tables, which no role made here may be able to change directly. */
const REGISTRY_TABLES = REGISTRY_READS.filter((g) => g.schema === undefined).map((g) => g.table);
const WRITE_PRIVILEGES = ['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'] as const;

/** Lower-case letters, digits and `_`, as PostgreSQL folds unquoted names: no quoting surprises in URLs or psql. */
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export class GatewayRoleError extends Error {
  override name = 'GatewayRoleError';
  /** true: the request itself is bad (exit 2); false: the database refused or holds a conflicting role. */
  readonly badInput: boolean;

  constructor(message: string, badInput: boolean) {
    super(message);
    this.badInput = badInput;
  }
}

export interface GatewayRoleResult {
  readonly role: string;
  readonly created: boolean;
  readonly passwordSet: boolean;
  /** What was granted, as `GRANT` would name it (`SELECT ON public.permission_registry`). */
  readonly granted: readonly string[];
  /** Optional grants whose table does not exist here. */
  readonly skipped: readonly string[];
}

export function gatewayRoleNameProblem(name: string): string | undefined {
  if (ROLE_NAME.test(name) && !name.startsWith('pg_')) return undefined;
  return (
    `role name ${JSON.stringify(name)} must be 1-63 lower-case letters, digits or "_", not starting with a ` +
    'digit or "pg_" (e.g. agent_gateway)'
  );
}

/** {@link ensureRole} for the gateway's read-only role. */
export function ensureGatewayRole(
  sql: postgres.Sql,
  opts: { name: string; password?: string },
): Promise<GatewayRoleResult> {
  return ensureRole(sql, GATEWAY_ROLE, opts);
}

/**
 * Creates the role if it does not exist (LOGIN, no other attribute), sets its password when one is given,
 * and grants exactly the spec's table and function grants plus CONNECT on this database and USAGE on
 * their schemas. Idempotent. Refuses an existing role that could write the registry (directly, through a
 * column grant or a membership) or that holds administrative attributes, because granting to it would
 * not make it a role of this kind. One transaction, under the migrations' advisory lock, so concurrent
 * runs do not race on CREATE ROLE.
 */
export async function ensureRole(
  sql: postgres.Sql,
  spec: RoleSpec,
  opts: { name: string; password?: string },
): Promise<GatewayRoleResult> {
  const nameProblem = gatewayRoleNameProblem(opts.name);
  if (nameProblem !== undefined) throw new GatewayRoleError(nameProblem, true);
  const verifier = opts.password === undefined ? undefined : passwordVerifier(opts.password);
  const role = opts.name;

  return sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK_KEY}::bigint)`;
    const registrySchema = await registrySchemaOf(tx);
    const grants = spec.tables.map((g) => ({ ...g, schema: g.schema ?? registrySchema }));

    const [existing] = await tx<RoleAttributes[]>`
      SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
      FROM pg_catalog.pg_roles WHERE rolname = ${role}`;
    if (existing !== undefined) await refuseUnfitRole(tx, role, existing, registrySchema, spec);

    const password = verifier === undefined ? '' : ` PASSWORD '${verifier}'`;
    if (existing === undefined) {
      await tx.unsafe(
        `CREATE ROLE ${quoteIdent(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS${password}`,
      );
    } else {
      await tx.unsafe(`ALTER ROLE ${quoteIdent(role)} LOGIN${password}`);
    }

    const granted: string[] = [];
    const skipped: string[] = [];
    const [db] = await tx<{ name: string }[]>`SELECT current_database() AS name`;
    await tx.unsafe(`GRANT CONNECT ON DATABASE ${quoteIdent(db!.name)} TO ${quoteIdent(role)}`);
    granted.push(`CONNECT ON DATABASE ${db!.name}`);
    const usable = new Set<string>();
    // Tables and functions alike: present (or optional and skipped), then USAGE on the schema once, then
    // the grant itself. Names come from the lists above, never from input.
    const objects: GrantObject[] = [
      ...grants.map((g) => ({
        schema: g.schema,
        label: `${g.schema}.${g.table}`,
        sqlName: `${quoteIdent(g.schema)}.${quoteIdent(g.table)}`,
        kind: 'table' as const,
        privileges: g.privileges.join(', '),
        optional: g.optional === true,
      })),
      ...spec.functions.map((g) => ({
        schema: g.schema,
        label: `${g.schema}.${g.signature}`,
        sqlName: `${quoteIdent(g.schema)}.${g.signature}`,
        kind: 'function' as const,
        privileges: 'EXECUTE',
        optional: g.optional === true,
      })),
    ];
    for (const object of objects) {
      const [found] =
        object.kind === 'table'
          ? await tx<{ present: boolean }[]>`SELECT to_regclass(${object.sqlName}) IS NOT NULL AS present`
          : await tx<
              { present: boolean }[]
            >`SELECT to_regprocedure(${object.sqlName}) IS NOT NULL AS present`;
      const on = object.kind === 'table' ? object.label : `FUNCTION ${object.label}`;
      if (found?.present !== true) {
        if (object.optional) {
          skipped.push(`${object.privileges} ON ${on} (no such ${object.kind})`);
          continue;
        }
        throw new GatewayRoleError(
          `${object.kind} ${object.label} does not exist: run \`agent-gateway migrate\` first (it creates the registry tables and the extension)`,
          false,
        );
      }
      if (!usable.has(object.schema)) {
        usable.add(object.schema);
        await tx.unsafe(`GRANT USAGE ON SCHEMA ${quoteIdent(object.schema)} TO ${quoteIdent(role)}`);
        granted.push(`USAGE ON SCHEMA ${object.schema}`);
      }
      const target = object.kind === 'table' ? `TABLE ${object.sqlName}` : `FUNCTION ${object.sqlName}`;
      await tx.unsafe(`GRANT ${object.privileges} ON ${target} TO ${quoteIdent(role)}`);
      granted.push(`${object.privileges} ON ${on}`);
    }
    return { role, created: existing === undefined, passwordSet: verifier !== undefined, granted, skipped };
  });
}

/** A table or function grant, as one loop applies it. */
interface GrantObject {
  readonly schema: string;
  /** How messages name it: `schema.table` or `schema.function(args)`. */
  readonly label: string;
  /** How SQL names it (quoted identifiers; a function's signature from GATEWAY_ROLE_FUNCTION_GRANTS). */
  readonly sqlName: string;
  readonly kind: 'table' | 'function';
  readonly privileges: string;
  readonly optional: boolean;
}

interface RoleAttributes {
  rolsuper: boolean;
  rolcreaterole: boolean;
  rolcreatedb: boolean;
  rolreplication: boolean;
  rolbypassrls: boolean;
}

async function refuseUnfitRole(
  tx: postgres.TransactionSql,
  role: string,
  attributes: RoleAttributes,
  registrySchema: string,
  spec: RoleSpec,
): Promise<void> {
  const named: Array<[keyof RoleAttributes, string]> = [
    ['rolsuper', 'SUPERUSER'],
    ['rolcreaterole', 'CREATEROLE'],
    ['rolcreatedb', 'CREATEDB'],
    ['rolreplication', 'REPLICATION'],
    ['rolbypassrls', 'BYPASSRLS'],
  ];
  const held = named.filter(([key]) => attributes[key]).map(([, word]) => word);
  if (held.length > 0) {
    throw new GatewayRoleError(
      `role ${role} already exists with ${held.join(', ')}: the ${spec.kind}'s role must hold no administrative ` +
        'attribute; choose a new role name (it is created read-only) or drop those attributes',
      false,
    );
  }
  const writes: string[] = [];
  for (const table of REGISTRY_TABLES) {
    const qualified = `${quoteIdent(registrySchema)}.${quoteIdent(table)}`;
    for (const privilege of WRITE_PRIVILEGES) {
      const [row] = await tx<{ has: boolean }[]>`
        SELECT has_table_privilege(${role}, ${qualified}, ${privilege}) AS has`;
      if (row?.has === true) writes.push(`${privilege} on ${table}`);
    }
    // A column grant (UPDATE (revoked_at), say) is not a table privilege, and un-revoking needs no more.
    for (const privilege of ['INSERT', 'UPDATE'] as const) {
      const [row] = await tx<{ has: boolean }[]>`
        SELECT has_any_column_privilege(${role}, ${qualified}, ${privilege}) AS has`;
      if (row?.has === true && !writes.includes(`${privilege} on ${table}`)) {
        writes.push(`${privilege} on columns of ${table}`);
      }
    }
  }
  for (const fn of spec.forbiddenFunctions) {
    if (!(await functionExists(tx, fn))) continue;
    const [row] = await tx<{ has: boolean }[]>`
      SELECT has_function_privilege(${role}, ${`${quoteIdent(fn.schema)}.${fn.signature}`}, 'EXECUTE') AS has`;
    if (row?.has === true) writes.push(`EXECUTE on ${fn.schema}.${fn.signature}`);
  }
  if (writes.length > 0) {
    throw new GatewayRoleError(
      `role ${role} already exists and can change the registry (${writes.join(', ')}), directly, through a ` +
        `role it is a member of, or as an owner: the ${spec.kind} must not be able to do that; choose ` +
        'a new role name or revoke those privileges',
      false,
    );
  }
}

async function functionExists(tx: postgres.TransactionSql, fn: FunctionGrant): Promise<boolean> {
  const [row] = await tx<{ present: boolean }[]>`
    SELECT to_regprocedure(${`${quoteIdent(fn.schema)}.${fn.signature}`}) IS NOT NULL AS present`;
  return row?.present === true;
}

/** The schema holding the registry (where migrate created agent_gateway_schema_version). */
async function registrySchemaOf(tx: postgres.TransactionSql): Promise<string> {
  if (!(await versionTableExists(tx))) {
    throw new GatewayRoleError(
      'the registry tables do not exist in this database: run `agent-gateway migrate` first',
      false,
    );
  }
  const [row] = await tx<{ schema: string }[]>`
    SELECT n.nspname AS schema FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'agent_gateway_schema_version' AND n.nspname = ANY (current_schemas(false))
    ORDER BY array_position(current_schemas(false), n.nspname) LIMIT 1`;
  return row!.schema;
}

function passwordVerifier(password: string): string {
  try {
    return scramSha256Verifier(password);
  } catch (err) {
    throw new GatewayRoleError(`gateway role password: ${(err as Error).message}`, true);
  }
}

/** A double-quoted identifier; role names are checked by ROLE_NAME, schema and database names come from the catalog. */
function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
