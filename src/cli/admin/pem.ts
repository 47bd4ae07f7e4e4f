/**
 * PEM armour to DER, by base64-decoding the block: the bytes are exactly those the issuer wrote, never
 * re-encoded by a parser (the registry binds keys by their exact SPKI bytes).
 */
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

export interface PemBlock {
  readonly label: string;
  readonly der: Buffer;
}

export function pemBlocks(text: string): PemBlock[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => ({
    label: m[1] ?? '',
    der: Buffer.from((m[2] ?? '').replace(/\s+/g, ''), 'base64'),
  }));
}

/** True when the bytes look like PEM text rather than binary DER. */
export function isPem(bytes: Buffer): boolean {
  return bytes.includes('-----BEGIN ');
}
