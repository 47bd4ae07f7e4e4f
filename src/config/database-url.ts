/**
 * The one check of a registry URL, for the config loader (`policy.database_url`, `database_url_env`) and
 * every CLI command that takes `--database-url`: it must parse as a URL with the postgres: or postgresql:
 * scheme (what postgres.js accepts). The message never quotes the value, which may hold a password.
 */
export function postgresUrlProblem(text: string): string | undefined {
  const expected =
    'must be a postgres:// or postgresql:// URL such as postgres://user:password@host:5432/dbname ' +
    '(the value is not shown because it may contain a password)';
  let url: URL;
  try {
    url = new URL(text.trim());
  } catch {
    return expected;
  }
  return url.protocol === 'postgres:' || url.protocol === 'postgresql:' ? undefined : expected;
}
