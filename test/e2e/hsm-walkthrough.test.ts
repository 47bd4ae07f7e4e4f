import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type FreshDatabase, freshDatabase } from '../helpers/db.js';
import { replaceOnce, runShell, shBlockAfter } from '../helpers/doc-script.js';
import { closedPort } from '../helpers/loopback-servers.js';

/**
 * docs/HARDWARE-KEYS.md's walkthrough ("Walkthrough with SoftHSM2"), run as written by bash in an empty
 * directory against an empty database, with `agent-gateway` on the PATH (the clone's bin/) as the
 * document asks. Only the three fixed ports are replaced, so that parallel test files cannot collide;
 * the database comes in AGENT_GATEWAY_DATABASE_URL, which the block itself reads. The tokens are
 * SoftHSM2's (Debian's softhsm2 and libengine-pkcs11-openssl, which .ci/run installs).
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOC = join(ROOT, 'docs', 'HARDWARE-KEYS.md');
let db: FreshDatabase;
let dir: string;

before(async () => {
  db = await freshDatabase({ migrate: false });
  dir = await mkdtemp(join(tmpdir(), 'ag-hsm-walkthrough-'));
});

after(async () => {
  await db?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Every file under `root`, relative to it. */
async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1));
}

test('the hardware-key walkthrough runs as written: the tunnel is allowed with keys that never left their tokens', {
  timeout: 150_000,
}, async () => {
  let script = shBlockAfter(await readFile(DOC, 'utf8'), '## Walkthrough with SoftHSM2');
  script = replaceOnce(script, /\b8443\b/g, String(await closedPort()));
  script = replaceOnce(script, /\b8080\b/g, String(await closedPort()));
  script = replaceOnce(script, /\b3128\b/g, String(await closedPort()));

  const result = await runShell(script, {
    cwd: dir,
    env: { AGENT_GATEWAY_DATABASE_URL: db.url, PATH: `${join(ROOT, 'bin')}:${process.env['PATH'] ?? ''}` },
  });
  assert.equal(result.code, 0, `walkthrough failed:\n${result.output}`);
  // What the document says it shows.
  assert.match(result.output, /pkcs11:token=org-keys;serial=[^;]+;object=org-alice;id=/);
  assert.match(result.output, /pkcs11:token=agent-keys;serial=[^;]+;object=agent-alpha;id=/);
  assert.match(result.output, /\(in the token: sensitive, not extractable\)/);
  assert.match(result.output, /no problems/);
  assert.match(result.output, /^CONNECT 200, GET 200$/m);
  assert.match(result.output, /^1$/m, 'one CONNECT allowed in the gateway log');
  const log = await readFile(join(dir, 'gateway.log'), 'utf8');
  const allowed = log
    .split('\n')
    .filter((line) => line.includes('"CONNECT allowed"'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(allowed.length, 1);
  assert.equal(allowed[0]?.['source_identity'], 'agent-alpha');
  assert.equal(allowed[0]?.['signing_key_id'], 'org-alice');

  // "The only private key files in the directory are the gateway CA's and the gateway's own."
  const keyFiles = [];
  for (const file of await filesUnder(dir)) {
    if (file.startsWith('hsm/')) continue; // the token store itself
    if ((await readFile(join(dir, file), 'utf8')).includes('PRIVATE KEY')) keyFiles.push(file);
  }
  assert.deepEqual(keyFiles.sort(), ['pki/ca-key.pem', 'pki/gateway-key.pem']);
});
