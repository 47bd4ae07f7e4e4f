import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as pkijs from 'pkijs';
import {
  CertificateError,
  type ClientCertificate,
  readClientCertificate,
} from '../../src/identity/client-certificate.js';
import { encodeOidContent } from '../../src/identity/oid.js';

const run = promisify(execFile);
const IDENTITY_OID = '1.3.6.1.4.1.57264.1.1';
const OID = encodeOidContent(IDENTITY_OID);
const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];

interface Generated {
  der: Buffer;
  /** `openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER`, the interop definition. */
  opensslSpki: Buffer;
}

let dir = '';
let counter = 0;

/** A self-signed certificate from the openssl CLI, with `-addext` for each entry of `extensions`. */
async function generate(extensions: string[], key: string[] = EC): Promise<Generated> {
  const base = join(dir, `cert-${counter++}`);
  const options = ['-nodes', '-keyout', `${base}.key`, '-subj', '/CN=t', '-days', '1'];
  const addext = extensions.flatMap((ext) => ['-addext', ext]);
  const output = ['-outform', 'DER', '-out', `${base}.der`];
  await run('openssl', ['req', '-x509', ...key, ...options, ...addext, ...output]);
  const pubkey = ['-pubkey', '-noout', '-out', `${base}.pub`];
  await run('openssl', ['x509', '-inform', 'DER', '-in', `${base}.der`, ...pubkey]);
  await run('openssl', ['pkey', '-pubin', '-in', `${base}.pub`, '-outform', 'DER', '-out', `${base}.spki`]);
  return { der: await readFile(`${base}.der`), opensslSpki: await readFile(`${base}.spki`) };
}

const identityExt = (value: string): string => `${IDENTITY_OID}=${value}`;
const certs: Record<string, Generated> = {};

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'identity-cert-'));
  const specs: Record<string, [string[], string[]?]> = {
    ec: [[identityExt('ASN1:UTF8String:agent-alpha')]],
    rsa: [[identityExt('ASN1:UTF8String:agent-rsa')], ['-newkey', 'rsa:2048']],
    ed25519: [[identityExt('ASN1:UTF8String:agent-ed')], ['-newkey', 'ed25519']],
    none: [[]],
    otherOnly: [['1.2.3.4=ASN1:UTF8String:not-the-identity']],
    ia5: [[identityExt('ASN1:IA5STRING:agent-alpha')]],
    trailing: [[identityExt('DER:0C0B6167656E742D616C7068610500')]],
    integer: [[identityExt('ASN1:INTEGER:5')]],
    empty: [[identityExt('DER:0C00')]],
    invalidUtf8: [[identityExt('DER:0C02C328')]],
    nonAscii: [[identityExt('DER:0C0661 67 C3 AB 6E 74'.replaceAll(' ', ''))]],
    critical: [[identityExt('critical,ASN1:UTF8String:agent-alpha')]],
    garbageOther: [['1.2.3.4=DER:FFFF', identityExt('ASN1:UTF8String:agent-alpha')]],
    // Same-length OIDs, so the second can be patched into a duplicate of the first below.
    twoOids: [
      [identityExt('ASN1:UTF8String:agent-alpha'), '1.3.6.1.4.1.57264.1.9=ASN1:UTF8String:agent-beta'],
    ],
  };
  const entries = await Promise.all(
    Object.entries(specs).map(async ([name, [exts, key]]) => [name, await generate(exts, key)] as const),
  );
  for (const [name, cert] of entries) certs[name] = cert;
});

after(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

function cert(name: string): Generated {
  const found = certs[name];
  assert.ok(found, `certificate ${name} was not generated`);
  return found;
}

function read(der: Buffer, oid: Buffer = OID): ClientCertificate {
  return readClientCertificate(der, oid);
}

function rejects(der: Buffer, message: RegExp): void {
  assert.throws(
    () => read(der),
    (e: unknown) => e instanceof CertificateError && message.test(e.message),
  );
}

/** Builds one DER element (single-byte tag, minimal length). */
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  const n = body.length;
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...length]), body]);
}
const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const oidTlv = (dotted: string): Buffer => tlv(0x06, encodeOidContent(dotted));
const ext = (dotted: string, value: Buffer, critical?: Buffer): Buffer =>
  seq(oidTlv(dotted), ...(critical ? [critical] : []), tlv(0x04, value));

const ECDSA_SHA256 = seq(oidTlv('1.2.840.10045.4.3.2'));
const NAME_T = seq(tlv(0x31, seq(oidTlv('2.5.4.3'), utf8('t'))));
const utcTime = (s: string): Buffer => tlv(0x17, Buffer.from(s));

interface Parts {
  version?: Buffer | null;
  serial?: Buffer;
  validity?: Buffer;
  subject?: Buffer;
  spki?: Buffer;
  afterSpki?: Buffer[];
  extensions?: Buffer | null;
  afterExtensions?: Buffer[];
  signature?: Buffer;
}

/** A hand-assembled certificate (unsigned: the reader never checks signatures) around a real SPKI. */
function build(parts: Parts = {}): Buffer {
  const extensions =
    parts.extensions === undefined ? seq(ext(IDENTITY_OID, utf8('agent-alpha'))) : parts.extensions;
  const tbs = seq(
    ...(parts.version === null ? [] : [parts.version ?? tlv(0xa0, hex('02 01 02'))]),
    parts.serial ?? hex('02 01 01'),
    ECDSA_SHA256,
    NAME_T,
    parts.validity ?? seq(utcTime('250101000000Z'), utcTime('350101000000Z')),
    parts.subject ?? NAME_T,
    parts.spki ?? cert('ec').opensslSpki,
    ...(parts.afterSpki ?? []),
    ...(extensions === null ? [] : [tlv(0xa3, extensions)]),
    ...(parts.afterExtensions ?? []),
  );
  return seq(tbs, ECDSA_SHA256, parts.signature ?? hex('03 03 00 ab cd'));
}

describe('readClientCertificate on openssl certificates', () => {
  for (const [name, identity] of [
    ['ec', 'agent-alpha'],
    ['rsa', 'agent-rsa'],
    ['ed25519', 'agent-ed'],
  ] as const) {
    test(`${name}: reads the identity and the exact SPKI bytes`, () => {
      const { der, opensslSpki } = cert(name);
      const result = read(der);
      assert.equal(result.identity, identity);
      assert.equal(result.identityProblem, null);
      assert.equal(result.spki.toString('hex'), opensslSpki.toString('hex'));
      // Node's OpenSSL agrees on the key (it re-encodes, so this is a second opinion, not the definition).
      const viaNode = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
      assert.equal(result.spki.toString('hex'), viaNode.toString('hex'));
    });
  }

  test('the SPKI is a view into the input, not a copy', () => {
    const { der } = cert('ec');
    const { spki } = read(der);
    assert.equal(spki.buffer, der.buffer);
    assert.ok(
      spki.byteOffset >= der.byteOffset && spki.byteOffset + spki.length <= der.byteOffset + der.length,
    );
  });

  test('works on a certificate that sits inside a larger buffer', () => {
    const { der, opensslSpki } = cert('ec');
    const big = Buffer.concat([Buffer.from('prefix'), der, Buffer.from('suffix')]);
    const view = big.subarray(6, 6 + der.length);
    const result = read(view);
    assert.equal(result.identity, 'agent-alpha');
    assert.deepEqual(result.spki, opensslSpki);
  });

  test('no extension at all: missing', () => {
    assert.deepEqual(read(cert('none').der), {
      spki: cert('none').opensslSpki,
      identity: null,
      identityProblem: 'missing',
      claimedIdentity: null,
    });
  });

  test('only other extensions: missing', () => {
    const result = read(cert('otherOnly').der);
    assert.equal(result.identity, null);
    assert.equal(result.identityProblem, 'missing');
  });

  test('another configured OID is missing from a certificate that carries the default one', () => {
    const result = read(cert('ec').der, encodeOidContent('1.3.6.1.4.1.57264.1.2'));
    assert.equal(result.identityProblem, 'missing');
    const prefix = read(cert('ec').der, encodeOidContent('1.3.6.1.4.1.57264.1'));
    assert.equal(prefix.identityProblem, 'missing');
  });

  for (const name of ['ia5', 'trailing', 'integer', 'empty', 'invalidUtf8']) {
    test(`identity value that is not exactly one non-empty UTF8String (${name}): malformed`, () => {
      const result = read(cert(name).der);
      assert.equal(result.identity, null);
      assert.equal(result.identityProblem, 'malformed');
      assert.deepEqual(result.spki, cert(name).opensslSpki);
      // What the client claimed is kept, as raw bytes, for the audit trail (never matched).
      assert.ok(result.claimedIdentity instanceof Buffer);
      assert.ok(cert(name).der.includes(result.claimedIdentity));
    });
  }

  test('non-ASCII UTF-8 is used verbatim', () => {
    assert.equal(read(cert('nonAscii').der).identity, 'agënt');
  });

  test('criticality is ignored', () => {
    assert.equal(read(cert('critical').der).identity, 'agent-alpha');
  });

  test("another extension's unparseable value is not our business", () => {
    assert.equal(read(cert('garbageOther').der).identity, 'agent-alpha');
  });

  test('the identity OID twice: malformed, whichever comes first', () => {
    const { der } = cert('twoOids');
    assert.equal(read(der).identity, 'agent-alpha');
    const other = encodeOidContent('1.3.6.1.4.1.57264.1.9');
    const at = der.indexOf(other);
    assert.ok(at > 0 && der.indexOf(other, at + 1) === -1);
    const duplicated = Buffer.from(der);
    duplicated[at + other.length - 1] = 0x01; // ...57264.1.9 -> ...57264.1.1, same length
    const result = read(duplicated);
    assert.deepEqual(
      { spki: result.spki, identity: result.identity, identityProblem: result.identityProblem },
      { spki: cert('twoOids').opensslSpki, identity: null, identityProblem: 'malformed' },
    );
    // The first extension's value is kept as the claim, for the audit trail: the UTF8String "agent-alpha".
    assert.equal(result.claimedIdentity?.subarray(2).toString(), 'agent-alpha');
    // pkijs reads the same two extensions, confirming the patch produced a real duplicate.
    const parsed = pkijs.Certificate.fromBER(new Uint8Array(duplicated));
    assert.equal(parsed.extensions?.filter((e) => e.extnID === IDENTITY_OID).length, 2);
  });

  test('a chain (leaf followed by another certificate) is refused', () => {
    rejects(Buffer.concat([cert('ec').der, cert('none').der]), /bytes after its outer SEQUENCE/);
  });

  test('a single trailing byte is refused', () => {
    rejects(Buffer.concat([cert('ec').der, Buffer.from([0])]), /1 bytes after its outer SEQUENCE/);
  });

  test('truncation is refused', () => {
    const { der } = cert('ec');
    for (const cut of [0, 1, 2, 10, der.length - 1]) rejects(der.subarray(0, cut), /client certificate/);
  });

  test('a non-minimal outer length is refused', () => {
    const { der } = cert('rsa');
    assert.equal(der[1], 0x82);
    const padded = Buffer.concat([Buffer.from([0x30, 0x83, 0x00]), der.subarray(2)]);
    rejects(padded, /leading zero byte/);
  });

  test('an indefinite outer length is refused', () => {
    const { der } = cert('ec');
    const headerLength = der[1]! < 0x80 ? 2 : 2 + (der[1]! & 0x7f);
    const indefinite = Buffer.concat([
      Buffer.from([0x30, 0x80]),
      der.subarray(headerLength),
      Buffer.alloc(2),
    ]);
    rejects(indefinite, /indefinite length/);
  });

  test('input that is not a certificate is refused with a CertificateError', () => {
    rejects(Buffer.alloc(0), /empty/);
    rejects(Buffer.from('-----BEGIN CERTIFICATE-----'), /does not start with a DER SEQUENCE/);
    rejects(hex('30 00'), /tbsCertificate/);
  });

  test('reading is stateless across calls (scratch cursors are reused safely)', () => {
    const order = ['ec', 'ia5', 'none', 'rsa', 'ec', 'twoOids', 'ed25519', 'ec'];
    const first = order.map((name) => read(cert(name).der));
    for (let round = 0; round < 200; round++) {
      order.forEach((name, i) => {
        assert.deepEqual(read(cert(name).der), first[i]);
      });
      assert.throws(() => read(cert('ec').der.subarray(0, 100)), CertificateError);
    }
  });
});

describe('readClientCertificate on hand-built certificates', () => {
  test('the builder produces a certificate both this reader and pkijs accept', () => {
    const der = build();
    assert.equal(read(der).identity, 'agent-alpha');
    const parsed = pkijs.Certificate.fromBER(new Uint8Array(der));
    assert.equal(parsed.extensions?.[0]?.extnID, IDENTITY_OID);
  });

  test('accepts a v1 certificate without version or extensions', () => {
    const result = read(build({ version: null, extensions: null }));
    assert.equal(result.identityProblem, 'missing');
    assert.deepEqual(result.spki, cert('ec').opensslSpki);
  });

  test('accepts GeneralizedTime validity, unique IDs, an empty subject and an explicit FALSE criticality', () => {
    const der = build({
      validity: seq(tlv(0x18, Buffer.from('20500101000000Z')), tlv(0x18, Buffer.from('20600101000000Z'))),
      subject: seq(),
      afterSpki: [hex('81 02 00 aa'), hex('82 02 04 f0')],
      extensions: seq(ext(IDENTITY_OID, utf8('agent-alpha'), hex('01 01 00'))),
    });
    assert.equal(read(der).identity, 'agent-alpha');
  });

  test('an empty extension list reads as missing', () => {
    assert.equal(read(build({ extensions: seq() })).identityProblem, 'missing');
  });

  test('three copies of the identity extension are malformed', () => {
    const one = ext(IDENTITY_OID, utf8('agent-alpha'));
    assert.equal(read(build({ extensions: seq(one, one, one) })).identityProblem, 'malformed');
  });

  test('an identity with a control character or DEL is malformed; other Unicode is kept verbatim', () => {
    for (const bad of ['agent\nalpha', 'agent\u0000', '\tagent', 'agent\u007f', 'a\r']) {
      const result = read(build({ extensions: seq(ext(IDENTITY_OID, utf8(bad))) }));
      assert.equal(result.identityProblem, 'malformed', JSON.stringify(bad));
      assert.equal(result.identity, null);
    }
    const ok = read(build({ extensions: seq(ext(IDENTITY_OID, utf8('agent-é-漢 x'))) }));
    assert.equal(ok.identity, 'agent-é-漢 x');
  });

  test('an identity UTF8String with a non-minimal length is malformed', () => {
    const value = hex(`0c 81 05 ${Buffer.from('agent').toString('hex')}`);
    assert.equal(read(build({ extensions: seq(ext(IDENTITY_OID, value)) })).identityProblem, 'malformed');
  });

  const broken: Array<[string, Parts, RegExp]> = [
    ['an Extension without its OCTET STRING', { extensions: seq(seq(oidTlv(IDENTITY_OID))) }, /ends there/],
    [
      'a constructed OCTET STRING as extnValue',
      { extensions: seq(seq(oidTlv(IDENTITY_OID), tlv(0x24, tlv(0x04, utf8('a'))))) },
      /expected an OCTET STRING/,
    ],
    [
      'a non-DER criticality BOOLEAN',
      { extensions: seq(ext(IDENTITY_OID, utf8('a'), hex('01 01 01'))) },
      /not a DER BOOLEAN/,
    ],
    [
      'an Extension with an extra element',
      { extensions: seq(seq(oidTlv(IDENTITY_OID), tlv(0x04, utf8('a')), hex('05 00'))) },
      /Extension at offset \d+ has extra content/,
    ],
    [
      'an extension list that is a SET',
      { extensions: tlv(0x31, ext(IDENTITY_OID, utf8('a'))) },
      /expected tag 0x30/,
    ],
    ['an element after the extensions', { afterExtensions: [hex('05 00')] }, /unexpected element/],
    ['an unknown [4] field before the extensions', { afterSpki: [hex('a4 00')] }, /unexpected element/],
    ['a non-minimal serial number', { serial: hex('02 02 00 01') }, /serialNumber .* redundant leading byte/],
    [
      'a version holding two INTEGERs',
      { version: tlv(0xa0, hex('02 01 02 02 01 02')) },
      /more than one INTEGER/,
    ],
    [
      'a malformed validity time',
      { validity: seq(utcTime('2501010000Z'), utcTime('350101000000Z')) },
      /YYMMDDHHMMSSZ/,
    ],
    ['a single validity time', { validity: seq(utcTime('250101000000Z')) }, /ends there/],
    [
      'a constructed string in the subject',
      { subject: seq(tlv(0x31, seq(oidTlv('2.5.4.3'), tlv(0x2c, utf8('t'))))) },
      /tag 0x2c/,
    ],
    [
      'a multi-byte tag in the subject',
      { subject: seq(tlv(0x31, seq(oidTlv('2.5.4.3'), hex('1f 20 01 41')))) },
      /multi-byte tag/,
    ],
    ['an attribute without a value', { subject: seq(tlv(0x31, seq(oidTlv('2.5.4.3')))) }, /ends there/],
    ['a signature with 8 unused bits', { signature: hex('03 02 08 00') }, /8 unused bits/],
    [
      'an SPKI with extra content',
      { spki: seq(ECDSA_SHA256, hex('03 01 00'), hex('05 00')) },
      /subjectPublicKeyInfo .* extra content/,
    ],
  ];
  for (const [what, parts, message] of broken) {
    test(`refuses ${what}`, () => rejects(build(parts), message));
  }
});
