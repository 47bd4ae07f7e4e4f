import type { LoadedConfig } from './load.js';

const REDACTED = '***';
/** Query parameters that carry credentials in libpq-style URLs (`?password=...`, `?sslpassword=...`). */
const SECRET_PARAM = /pass|secret|token/i;

/**
 * The effective configuration (file values plus defaults) in a form safe to print or log: passwords in
 * URLs are masked, `policy.database_url_env` stays the variable's name, and the URL resolved from that
 * variable is not included at all.
 */
export function redactedConfig(loaded: LoadedConfig): unknown {
  const config = structuredClone(loaded.config);
  if (config.policy.database_url !== undefined) {
    config.policy.database_url = redactUrl(config.policy.database_url);
  }
  if (config.observability.otlp_endpoint !== undefined) {
    // Collector URLs sometimes embed basic-auth credentials too.
    config.observability.otlp_endpoint = redactUrl(config.observability.otlp_endpoint);
  }
  return config;
}

/** Masks the password and secret-looking query parameters; an unparsable URL is masked entirely. */
export function redactUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return REDACTED;
  }
  if (url.password !== '') url.password = REDACTED;
  for (const name of [...url.searchParams.keys()]) {
    if (SECRET_PARAM.test(name)) url.searchParams.set(name, REDACTED);
  }
  return url.toString();
}
