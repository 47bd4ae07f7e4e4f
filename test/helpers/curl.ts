import type { AgentFiles } from './clients.js';

/**
 * curl options that send a request through the gateway as `agent`: HTTP/1.1 CONNECT (`-p`) over
 * mutual TLS to the gateway on loopback, trusting the test CA.
 */
export function curlViaGateway(
  gatewayPort: number,
  caPath: string,
  agent: AgentFiles,
  maxTimeS: number,
): string[] {
  return [
    '-sS',
    '--max-time',
    String(maxTimeS),
    '--proxy',
    `https://127.0.0.1:${gatewayPort}`,
    '--proxy-cacert',
    caPath,
    '--proxy-cert',
    agent.certPath,
    '--proxy-key',
    agent.keyPath,
    '-p',
  ];
}
