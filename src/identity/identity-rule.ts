/**
 * The one definition of a valid agent identity, for every place that reads, writes, signs or matches one:
 * the certificate reader (what the gateway accepts), the policy engine, certificate issuance, and the
 * registry tools. A valid identity is
 * - non-empty,
 * - valid Unicode (no unpaired surrogate: UTF-8 cannot carry one, and a JS string would be re-encoded
 *   with U+FFFD and name another identity),
 * - free of C0 control characters and DEL: a line break cannot be signed in the newline-delimited
 *   canonical bytes, NUL cannot be stored in PostgreSQL text, and the others forge log lines,
 * and is otherwise used verbatim (case-sensitive, any other Unicode).
 */
const CONTROL = /[\u0000-\u001f\u007f]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why `identity` cannot be an agent identity, or undefined when it can. Quotes the value for the operator. */
export function identityProblem(identity: string): string | undefined {
  if (identity.length === 0) return 'an agent identity must not be empty; give a name such as "agent-alpha"';
  const control = CONTROL.exec(identity);
  if (control !== null) {
    return `agent identity ${JSON.stringify(identity)} contains ${controlName(control[0])}; remove it`;
  }
  if (LONE_SURROGATE.test(identity)) {
    return `agent identity ${JSON.stringify(identity)} is not valid Unicode (unpaired surrogate); fix the string`;
  }
  return undefined;
}

export function isValidIdentity(identity: string): boolean {
  return identity.length > 0 && !CONTROL.test(identity) && !LONE_SURROGATE.test(identity);
}

/** What an operator would call the control character (the three that matter most by name). */
function controlName(c: string): string {
  if (c === '\n') return 'a newline';
  if (c === '\r') return 'a carriage return';
  if (c === '\0') return 'a NUL character';
  return `a control character (U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')})`;
}
