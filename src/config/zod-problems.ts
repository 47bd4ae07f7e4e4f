import type { z } from 'zod';
import { formatKeyPath, formatTable, unknownKeyProblem } from './errors.js';
import {
  configSchema,
  egressSchema,
  observabilitySchema,
  policySchema,
  rateLimitIdentitySchema,
  rateLimitSchema,
  serverSchema,
} from './schema.js';

/**
 * Turns zod's issues into the operator-facing problems of a ConfigError: `key.path: what is wrong`, in
 * TOML's vocabulary (table, integer) rather than JavaScript's (object, number). Issues are produced with
 * `reportInput`, so `input` is present; string inputs are never echoed because a misplaced value may be
 * a secret.
 */

/** Known keys of every table, by table path (`''` is the root). */
const TABLE_KEYS: ReadonlyMap<string, readonly string[]> = new Map([
  ['', Object.keys(configSchema.shape)],
  ['server', Object.keys(serverSchema.shape)],
  ['observability', Object.keys(observabilitySchema.shape)],
  ['policy', Object.keys(policySchema.shape)],
  ['rate_limit', Object.keys(rateLimitSchema.shape)],
  ['rate_limit.identities.*', Object.keys(rateLimitIdentitySchema.shape)],
  ['egress', Object.keys(egressSchema.shape)],
]);

/** For each leaf key, the first table that defines it (used to say "it belongs in [policy]"). */
const KEY_HOME: ReadonlyMap<string, string> = (() => {
  const home = new Map<string, string>();
  for (const [table, keys] of TABLE_KEYS) {
    if (table === '') continue;
    for (const key of keys) if (!home.has(key)) home.set(key, `[${table}]`);
  }
  return home;
})();

export function issueToProblems(issue: z.core.$ZodIssue): string[] {
  const where = formatKeyPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const known = TABLE_KEYS.get(tableKeyOf(issue.path)) ?? [];
      return issue.keys.map((key) => unknownKeyProblem(key, issue.path, known, KEY_HOME));
    }
    case 'invalid_type':
      return [`${where}: ${invalidType(issue)}`];
    case 'too_small':
      return [`${where}: ${tooSmall(issue)}`];
    case 'too_big':
      return [`${where}: must be ${issue.inclusive === false ? '<' : '<='} ${issue.maximum}`];
    case 'invalid_value':
      return [`${where}: must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`];
    default:
      // Format and custom checks carry messages written for this config (see schema.ts).
      return [`${where || formatTable([])}: ${issue.message}`];
  }
}

/** The TABLE_KEYS entry for a table path; every `[rate_limit.identities."<name>"]` shares one. */
function tableKeyOf(path: readonly PropertyKey[]): string {
  if (path.length === 3 && path[0] === 'rate_limit' && path[1] === 'identities') {
    return 'rate_limit.identities.*';
  }
  return path.map(String).join('.');
}

function invalidType(issue: z.core.$ZodIssueInvalidType): string {
  if (issue.input === undefined) {
    return issue.expected === 'object'
      ? `required table is missing; add a [${formatKeyPath(issue.path)}] section`
      : 'required';
  }
  // `int` failures are the schema's "must be a whole number": the type was right, the value was not.
  if (issue.expected === 'int') return issue.message;
  // TOML allows inf and nan, which zod rejects as "not a number" although their type is float.
  if (typeof issue.input === 'number' && !Number.isFinite(issue.input)) {
    return `must be a finite number, not ${Number.isNaN(issue.input) ? 'nan' : 'inf'}`;
  }
  const hint =
    issue.expected === 'number' && typeof issue.input === 'string' ? ' (write it without quotes)' : '';
  return `must be ${tomlTypeName(issue.expected)}, not ${describeValueType(issue.input)}${hint}`;
}

function tooSmall(issue: z.core.$ZodIssueTooSmall): string {
  if (issue.origin === 'string' && Number(issue.minimum) === 1) return 'must not be empty';
  if (issue.origin === 'string') return `must be at least ${issue.minimum} characters long`;
  if (issue.origin === 'array') return `must have at least ${issue.minimum} entries`;
  return `must be ${issue.inclusive === false ? '>' : '>='} ${issue.minimum}`;
}

function tomlTypeName(expected: string): string {
  switch (expected) {
    case 'object':
      return 'a table';
    case 'array':
      return 'an array';
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'a boolean';
    default:
      return expected;
  }
}

function describeValueType(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a date-time'; // smol-toml's TomlDate extends Date
  switch (typeof value) {
    case 'string':
      return 'a string';
    case 'number':
      return Number.isInteger(value) ? 'an integer' : 'a float';
    case 'bigint':
      return 'an integer';
    case 'boolean':
      return 'a boolean';
    case 'object':
      return 'a table';
    default:
      return typeof value;
  }
}
