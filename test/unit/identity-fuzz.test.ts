import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as asn1js from 'asn1js';
import fc from 'fast-check';
import * as pkijs from 'pkijs';
import {
  CertificateError,
  type ClientCertificate,
  readClientCertificate,
} from '../../src/identity/client-certificate.js';
import { encodeOidContent } from '../../src/identity/oid.js';

/*
 * Differential fuzzing of the hand-written certificate reader against asn1js/pkijs. asn1js is a
 * lenient BER parser, so it may accept what ours refuses; the properties only bite when ours accepts.
 */

const run = promisify(execFile);
const IDENTITY_OID = '1.3.6.1.4.1.57264.1.1';
const OID = encodeOidContent(IDENTITY_OID);

let dir = '';
const bases: Buffer[] = [];
/** For each base certificate, the offsets of every element header (found by asn1js, not by ours). */
const headers: number[][] = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'identity-fuzz-'));
  const ext = (value: string): string[] => ['-addext', `${IDENTITY_OID}=${value}`];
  const specs: string[][] = [
    ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', ...ext('ASN1:UTF8String:agent-alpha')],
    ['-newkey', 'ed25519', ...ext('critical,ASN1:UTF8String:agent-ed')],
    ['-newkey', 'rsa:1024', ...ext('ASN1:UTF8String:agent-rsa'), '-addext', 'basicConstraints=CA:FALSE'],
    ['-newkey', 'ed25519', '-addext', 'subjectAltName=DNS:example.com', '-subj', '/O=Example/CN=x'],
  ];
  const generated = await Promise.all(
    specs.map(async (spec, i) => {
      const out = join(dir, `base-${i}.der`);
      const args = ['req', '-x509', '-nodes', '-keyout', join(dir, `base-${i}.key`), '-days', '1'];
      const subject = spec.includes('-subj') ? [] : ['-subj', '/CN=t'];
      await run('openssl', [...args, ...subject, ...spec, '-outform', 'DER', '-out', out]);
      return readFile(out);
    }),
  );
  for (const der of generated) {
    bases.push(der);
    headers.push(headerOffsets(der));
  }
});

after(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

/** Offsets of all element headers asn1js sees, including ones it found nested inside strings. */
function headerOffsets(der: Buffer): number[] {
  const parsed = asn1js.fromBER(new Uint8Array(der));
  assert.notEqual(parsed.offset, -1);
  const offsets: number[] = [];
  const visit = (block: asn1js.AsnType): void => {
    offsets.push(block.valueBeforeDecodeView.byteOffset);
    const children = (block.valueBlock as { value?: unknown }).value;
    if (!Array.isArray(children)) return;
    // OIDs keep their arcs in `value` too; only real elements have headers.
    for (const child of children) if (child instanceof asn1js.BaseBlock) visit(child as asn1js.AsnType);
  };
  visit(parsed.result);
  return offsets;
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'length'; header: number; lastByte: boolean; delta: number };

const someBytes = fc.uint8Array({ minLength: 1, maxLength: 8 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: someBytes }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('append' as const), bytes: someBytes }),
  fc.record({
    kind: fc.constant('length' as const),
    header: fc.nat(),
    lastByte: fc.boolean(),
    delta: fc.oneof(fc.integer({ min: -3, max: -1 }), fc.integer({ min: 1, max: 3 }), fc.constant(0x80)),
  }),
);

function mutate(base: Buffer, offsets: number[], mutations: Mutation[]): Buffer {
  let der = Buffer.from(base);
  for (const m of mutations) {
    if (der.length === 0) break;
    switch (m.kind) {
      case 'flip':
        der[m.at % der.length]! ^= 1 << m.bit;
        break;
      case 'set':
        der[m.at % der.length] = m.value;
        break;
      case 'insert': {
        const at = m.at % (der.length + 1);
        der = Buffer.concat([der.subarray(0, at), m.bytes, der.subarray(at)]);
        break;
      }
      case 'delete': {
        const at = m.at % der.length;
        der = Buffer.concat([der.subarray(0, at), der.subarray(at + m.count)]);
        break;
      }
      case 'truncate':
        der = der.subarray(0, m.at % der.length);
        break;
      case 'append':
        der = Buffer.concat([der, m.bytes]);
        break;
      case 'length': {
        // Offsets come from the unmutated base; after inserts/deletes they may land elsewhere, which
        // is just another mutation.
        const header = offsets[m.header % offsets.length]!;
        const first = header + 1;
        if (first >= der.length) break;
        const lengthBytes = der[first]! >= 0x80 ? der[first]! & 0x7f : 0;
        const at = m.lastByte && first + lengthBytes < der.length ? first + lengthBytes : first;
        der[at] = (der[at]! + m.delta) & 0xff;
        break;
      }
    }
  }
  return der;
}

/** Ours, with any exception other than CertificateError turned into a test failure. */
function ours(der: Buffer): ClientCertificate | null {
  try {
    return readClientCertificate(der, OID);
  } catch (error) {
    if (error instanceof CertificateError) return null;
    throw new Error(`reader threw ${String(error)} instead of a CertificateError on ${der.toString('hex')}`);
  }
}

interface Independent {
  spki: Buffer;
  identityExtensions: pkijs.Extension[];
}

/** pkijs's view of the certificate, or null when it does not parse it. */
function independent(der: Buffer): Independent | null {
  let cert: pkijs.Certificate;
  try {
    cert = pkijs.Certificate.fromBER(new Uint8Array(der));
  } catch {
    return null;
  }
  // pkijs re-encodes what it exposes, so take the SPKI's exact bytes from the schema match instead.
  const parsed = asn1js.fromBER(new Uint8Array(der));
  const match = asn1js.compareSchema(parsed.result, parsed.result, pkijs.Certificate.schema());
  assert.ok(match.verified, 'pkijs parsed the certificate but its schema does not match');
  const spkiBlock = (match.result as Record<string, asn1js.AsnType | undefined>)[
    'tbsCertificate.subjectPublicKeyInfo'
  ];
  assert.ok(spkiBlock, 'schema match lacks the subjectPublicKeyInfo');
  return {
    spki: Buffer.from(spkiBlock.valueBeforeDecodeView),
    identityExtensions: (cert.extensions ?? []).filter((e) => e.extnID === IDENTITY_OID),
  };
}

/** When ours accepts, pkijs must parse the certificate too and agree on the SPKI and the identity. */
function assertAgreement(der: Buffer, result: ClientCertificate): void {
  const other = independent(der);
  assert.ok(other, `ours accepted a certificate pkijs rejects: ${der.toString('hex')}`);
  assert.equal(result.spki.toString('hex'), other.spki.toString('hex'), 'SPKI bytes differ');
  const found = other.identityExtensions;
  if (result.identityProblem === 'missing') {
    assert.equal(found.length, 0, `ours says missing, pkijs found the extension: ${der.toString('hex')}`);
  } else if (result.identityProblem === 'malformed') {
    assert.ok(found.length > 0, `ours says malformed, pkijs found no extension: ${der.toString('hex')}`);
  } else {
    assert.equal(found.length, 1, `ours read an identity, pkijs found ${found.length} extensions`);
    const value = found[0]!.extnValue.valueBlock.valueHexView;
    const inner = asn1js.fromBER(value);
    assert.equal(inner.offset, value.length, 'identity extension value is not a single element for asn1js');
    assert.ok(inner.result instanceof asn1js.Utf8String, 'identity extension value is not a UTF8String');
    assert.equal(
      Buffer.from(inner.result.valueBlock.valueHexView).toString('hex'),
      Buffer.from(result.identity!).toString('hex'),
    );
    assert.equal(inner.result.valueBlock.value, result.identity);
  }
}

describe('certificate reader fuzzing', () => {
  test('the unmutated base certificates are read and agree with pkijs', () => {
    assert.equal(bases.length, 4);
    const identities = bases.map((der) => {
      const result = ours(der);
      assert.ok(result, 'a base certificate was refused');
      assertAgreement(der, result);
      return result.identity;
    });
    assert.deepEqual(identities, ['agent-alpha', 'agent-ed', 'agent-rsa', null]);
  });

  test('mutated certificates: only CertificateError, and agreement whenever ours accepts', () => {
    let accepted = 0;
    let withIdentity = 0;
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 3 }), (which, mutations) => {
        const index = which % bases.length;
        const der = mutate(bases[index]!, headers[index]!, mutations);
        const result = ours(der);
        if (result === null) return;
        accepted++;
        if (result.identity !== null) withIdentity++;
        assertAgreement(der, result);
      }),
      { numRuns: 6000 },
    );
    // Guard against a generator that only ever produces garbage: the agreement check must have run.
    assert.ok(accepted > 250, `only ${accepted} mutated certificates were accepted`);
    assert.ok(withIdentity > 100, `only ${withIdentity} accepted mutants carried an identity`);
  });

  test('random bytes and random DER-looking SEQUENCEs: only CertificateError', () => {
    const sequence = fc.uint8Array({ maxLength: 200 }).map((body) => {
      const length = body.length < 0x80 ? [body.length] : [0x81, body.length];
      return Buffer.concat([Buffer.from([0x30, ...length]), body]);
    });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
          sequence,
        ),
        (der) => {
          const result = ours(der);
          if (result !== null) assertAgreement(der, result);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
