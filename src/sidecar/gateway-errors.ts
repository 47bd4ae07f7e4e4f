/**
 * Why the gateway could not be reached, in words an operator can act on. The same sentence goes to
 * the log and into the 502 body the agent sees, so whoever looks first knows what to fix.
 */
const REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused (is the gateway running and listening on that port?)',
  ECONNRESET: 'connection reset by the gateway',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'the gateway host name does not resolve',
  EAI_AGAIN: 'the gateway host name could not be resolved (temporary DNS failure)',
  ETIMEDOUT: 'timed out',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    "the gateway's certificate is not signed by the CA in sidecar.gateway_ca_path (--gateway-ca)",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    "the gateway's certificate is not signed by the CA in sidecar.gateway_ca_path (--gateway-ca)",
  SELF_SIGNED_CERT_IN_CHAIN:
    "the gateway's certificate chain ends in a CA that is not in sidecar.gateway_ca_path (--gateway-ca)",
  DEPTH_ZERO_SELF_SIGNED_CERT:
    "the gateway's certificate is self-signed and not the one in sidecar.gateway_ca_path (--gateway-ca)",
  CERT_HAS_EXPIRED: "the gateway's certificate has expired",
  CERT_NOT_YET_VALID: "the gateway's certificate is not valid yet (check the clocks)",
  ERR_TLS_CERT_ALTNAME_INVALID:
    "the gateway's certificate does not name the host the sidecar connects to; set " +
    'sidecar.gateway_server_name (--gateway-server-name) to a name in the certificate',
};

export function describeGatewayError(error: unknown): string {
  const err = error as NodeJS.ErrnoException | undefined;
  const code = err?.code;
  if (code !== undefined && REASONS[code] !== undefined) return REASONS[code];
  const message = err instanceof Error ? err.message : String(error);
  return code === undefined ? message : `${message} (${code})`;
}
