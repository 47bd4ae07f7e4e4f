/**
 * The certificate code (@peculiar/x509 and its ASN.1 schemas) takes about a third of a second to load;
 * only the commands that issue certificates pay for it, not every registry command.
 */
export function loadIssuance(): Promise<typeof import('../../pki/certificates.js')> {
  return import('../../pki/certificates.js');
}
