/**
 * Every way a configuration can be wrong, reported together: an operator fixing a config file should
 * see all its problems in one run, each naming the key path (`policy.query_timeout_ms: ...`).
 * Problems never quote secret values (database URLs), only key names.
 */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly problems: readonly string[];
  /** The config file the problems are about. */
  readonly path: string;

  constructor(problems: readonly string[], path: string) {
    const list = problems.length > 0 ? problems : ['unknown problem'];
    super(`invalid configuration (config file: ${path}):\n${list.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = list;
    this.path = path;
  }
}

/** `policy.database_url`, `egress.allow_cidrs[2]`; the empty path is the document root. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else {
      const name = String(segment);
      const key = /^[A-Za-z0-9_-]+$/.test(name) ? name : JSON.stringify(name);
      out += out === '' ? key : `.${key}`;
    }
  }
  return out;
}

/** How the table holding a key is named in messages: `[root]`, `[policy]`. */
export function formatTable(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '[root]' : `[${formatKeyPath(path)}]`;
}

/**
 * `unknown key "rate_limt" in [root]; did you mean "rate_limit"?`. The suggestion is the closest key of
 * that table within a small edit distance, or, when the key exists verbatim in another table, that
 * table (a key written below the wrong `[table]` header is the usual TOML slip).
 */
export function unknownKeyProblem(
  key: string,
  table: readonly PropertyKey[],
  knownHere: readonly string[],
  knownElsewhere: ReadonlyMap<string, string>,
): string {
  const base = `unknown key ${JSON.stringify(key)} in ${formatTable(table)}`;
  const close = closestKey(key, knownHere);
  if (close !== undefined) return `${base}; did you mean ${JSON.stringify(close)}?`;
  const home = knownElsewhere.get(key);
  if (home !== undefined) return `${base}; it belongs in ${home}`;
  return `${base}; remove it (known keys: ${knownHere.join(', ')})`;
}

function closestKey(key: string, candidates: readonly string[]): string | undefined {
  // Allow one edit for short keys and roughly one per four characters beyond that: enough for typos,
  // not so loose that unrelated keys are suggested.
  const limit = Math.max(1, Math.floor(key.length / 4));
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const d = editDistance(key.toLowerCase(), candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance, two-row dynamic programming. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
