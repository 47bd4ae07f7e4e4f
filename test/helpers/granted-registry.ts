import { readFile, writeFile } from 'node:fs/promises';
import { freshDatabase } from './db.js';
import { type GatewayConfigInput, writeGatewayConfig } from './gateway-process.js';
import { createTestPki, type TestAgent, type TestPki } from './pki.js';
import { grantLoopbackPorts } from './sidecar-registry.js';

/** What a gateway test needs before its gateway: a test PKI, a fresh registry, and one granted agent. */
export interface GrantedRegistry {
  readonly pki: TestPki;
  readonly db: Awaited<ReturnType<typeof freshDatabase>>;
  /** `agent-alpha`, allowed to every loopback port it was given. */
  readonly alpha: TestAgent;
  /** A gateway config for this registry and PKI, with the extra lines given. */
  config(extra?: ConfigExtras): Promise<string>;
  /** Drops the database and removes the PKI's files. */
  cleanup(): Promise<void>;
}

export type ConfigExtras = Pick<GatewayConfigInput, 'extraServer' | 'extraPolicy' | 'extraEgress'> & {
  /** Lines for the [observability] table (which the config writer opens with log_level only). */
  readonly extraObservability?: string;
};

export async function grantedRegistry(ports: readonly number[]): Promise<GrantedRegistry> {
  const pki = await createTestPki();
  const db = await freshDatabase();
  const alpha = await pki.agent('agent-alpha');
  await grantLoopbackPorts(db.sql, { identity: 'agent-alpha', agentSpki: alpha.spkiDer, ports });
  return {
    pki,
    db,
    alpha,
    async config({ extraObservability, ...extra } = {}) {
      const path = await writeGatewayConfig({
        dir: pki.dir,
        databaseUrl: db.url,
        certPath: pki.serverCertPath,
        keyPath: pki.serverKeyPath,
        ...extra,
      });
      if (extraObservability !== undefined) {
        const text = await readFile(path, 'utf8');
        await writeFile(path, text.replace('[observability]\n', `[observability]\n${extraObservability}\n`));
      }
      return path;
    },
    async cleanup() {
      await db.drop();
      await pki.cleanup();
    },
  };
}
