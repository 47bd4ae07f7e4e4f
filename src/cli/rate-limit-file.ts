import { ConfigError } from '../config/errors.js';
import { parseTomlText, readConfigFile } from '../config/load.js';
import { type RateLimitSettings, rateLimitProblems, rateLimitSettings } from '../config/rate-limit.js';
import { rateLimitSchema } from '../config/schema.js';
import { issueToProblems } from '../config/zod-problems.js';

/**
 * The `[rate_limit]` table of a gateway config file, validated as the gateway validates it, for commands
 * that judge budgets (`budget show`, `exfil-test`) and may run where the gateway's TLS key or database
 * password variable are not available: only that table is read.
 */
export async function readRateLimitSettings(path: string): Promise<RateLimitSettings> {
  const raw = parseTomlText(await readConfigFile(path), path);
  const table =
    typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>)['rate_limit'] : undefined;
  const parsed = rateLimitSchema.safeParse(table ?? {}, { reportInput: true });
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      problems.push(...issueToProblems({ ...issue, path: ['rate_limit', ...issue.path] }));
    }
  }
  for (const p of rateLimitProblems(table)) problems.push(`${p.key}: ${p.message}`);
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems, path);
  return rateLimitSettings(parsed.data);
}
