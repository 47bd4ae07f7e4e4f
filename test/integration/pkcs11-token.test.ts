import assert from 'node:assert/strict';
import { createPublicKey, verify } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { openEngineTlsKey } from '../../src/pkcs11/engine-tls-key.js';
import { Pkcs11Error, type Pkcs11ErrorCode } from '../../src/pkcs11/errors.js';
import { generateTokenKey } from '../../src/pkcs11/keygen.js';
import { defaultEnginePath } from '../../src/pkcs11/settings.js';
import { openTokenKey, protectionWarnings, type TokenKey } from '../../src/pkcs11/token-key.js';
import { p1363ToDer } from '../../src/pki/ecdsa-signature.js';
import { SOFTHSM2_MODULE, type SoftHsm, startSoftHsm } from '../helpers/softhsm.js';

/**
 * src/pkcs11 against a real module (SoftHSM2 in its own directory): keys generated and used in the token,
 * and what tokens may hold that the CLI would never make (duplicate labels, keys that may not sign,
 * missing or foreign public key objects), each refused with its code.
 */
describe('PKCS#11 token keys (SoftHSM2)', () => {
  const PIN = '8675309';
  let hsm: SoftHsm;
  const pin = async () => PIN;
  const open = (uri: string) => openTokenKey({ uri, modulePath: SOFTHSM2_MODULE, pin });

  async function refused(run: () => Promise<TokenKey>, code: Pkcs11ErrorCode): Promise<string> {
    try {
      (await run()).close();
    } catch (error) {
      assert.ok(error instanceof Pkcs11Error, String(error));
      assert.equal(error.code, code, error.message);
      return error.message;
    }
    assert.fail(`expected ${code}`);
  }

  before(async () => {
    hsm = await startSoftHsm();
    // The module under test is loaded into this process, so it reads this process's SOFTHSM2_CONF.
    process.env['SOFTHSM2_CONF'] = hsm.env['SOFTHSM2_CONF'];
    await hsm.initToken('keys', PIN);
    await hsm.initToken('twin', PIN);
    await hsm.initToken('twin', PIN);
  });

  after(async () => {
    await hsm?.cleanup();
  });

  test('a generated key signs in the token: DER signatures that node:crypto verifies, also when asked at once', async () => {
    const made = await generateTokenKey({
      uri: 'pkcs11:token=keys;object=signer',
      modulePath: SOFTHSM2_MODULE,
      pin,
    });
    const spki = made.spkiDer;
    made.close();
    const key = await open('pkcs11:token=keys;object=signer');
    try {
      assert.deepEqual(key.spkiDer, spki);
      assert.match(key.resolvedUri, /^pkcs11:token=keys;serial=[0-9a-f]+;object=signer;id=/);
      const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' });
      const messages = Array.from({ length: 20 }, (_, i) => Buffer.from(`canonical bytes ${i}`));
      const signatures = await Promise.all(messages.map((m) => key.signP1363(m)));
      let highS = 0;
      const halfOrder = BigInt('0x7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8');
      for (const [i, p1363] of signatures.entries()) {
        assert.ok(verify('sha256', messages[i]!, publicKey, p1363ToDer(p1363)), `signature ${i}`);
        if (BigInt(`0x${p1363.subarray(32).toString('hex')}`) > halfOrder) highS++;
      }
      // The token does not normalize S, and the registry accepts both halves (DER, high-S accepted).
      assert.ok(highS > 0 && highS < 20, `high-S signatures among 20: ${highS}`);
    } finally {
      key.close();
    }
  });

  test('the wrong PIN, a missing token and a missing object have their own codes and name the URI', async () => {
    const wrong = await refusedWith('pkcs11:token=keys;object=signer', 'nope', 'PKCS11_PIN_INCORRECT');
    assert.match(wrong, /for pkcs11:token=keys;object=signer failed \(CKR_PIN_INCORRECT\)/);
    const noToken = await refused(() => open('pkcs11:token=absent;object=signer'), 'PKCS11_TOKEN_NOT_FOUND');
    assert.match(noToken, /no token matches pkcs11:token=absent;object=signer/);
    const noObject = await refused(() => open('pkcs11:token=keys;id=%FF%FF'), 'PKCS11_OBJECT_NOT_FOUND');
    assert.match(noObject, /no private key matching pkcs11:token=keys;id=%FF%FF/);
    const noModule = await refused(
      () => openTokenKey({ uri: 'pkcs11:token=keys;object=signer', modulePath: '/nonexistent/p11.so', pin }),
      'PKCS11_MODULE_MISSING',
    );
    assert.match(noModule, /\/nonexistent\/p11\.so/);
  });

  async function refusedWith(uri: string, wrongPin: string, code: Pkcs11ErrorCode): Promise<string> {
    return refused(() => openTokenKey({ uri, modulePath: SOFTHSM2_MODULE, pin: async () => wrongPin }), code);
  }

  test('two tokens with one label are ambiguous until serial= picks one', async () => {
    const message = await refused(() => open('pkcs11:token=twin;object=k'), 'PKCS11_TOKEN_AMBIGUOUS');
    const serials = [...message.matchAll(/serial "([^"]+)"/g)].map((m) => m[1]);
    assert.equal(serials.length, 2, message);
    const made = await generateTokenKey({
      uri: `pkcs11:token=twin;serial=${serials[0]};object=k`,
      modulePath: SOFTHSM2_MODULE,
      pin,
    });
    made.close();
    (await open(`pkcs11:serial=${serials[0]};object=k`)).close();
    await refused(() => open(`pkcs11:serial=${serials[1]};object=k`), 'PKCS11_OBJECT_NOT_FOUND');
  });

  test('generation needs a token selection and a fresh name', async () => {
    await refused(
      () => generateTokenKey({ uri: 'pkcs11:object=anywhere', modulePath: SOFTHSM2_MODULE, pin }),
      'PKCS11_URI_INVALID',
    );
    await refused(
      () => generateTokenKey({ uri: 'pkcs11:token=keys;object=signer', modulePath: SOFTHSM2_MODULE, pin }),
      'PKCS11_OBJECT_EXISTS',
    );
  });

  test('keys the token holds but must not be used are refused, each with its reason', async () => {
    hsm.rawKeyPair('keys', PIN, { label: 'dup', id: Buffer.from([1]) });
    hsm.rawKeyPair('keys', PIN, { label: 'dup', id: Buffer.from([2]) });
    assert.match(
      await refused(() => open('pkcs11:token=keys;object=dup'), 'PKCS11_OBJECT_AMBIGUOUS'),
      /add id=/,
    );
    (await open('pkcs11:token=keys;object=dup;id=%02')).close();

    hsm.rawKeyPair('keys', PIN, { label: 'no-sign', id: Buffer.from([3]), sign: false });
    assert.match(
      await refused(() => open('pkcs11:token=keys;object=no-sign'), 'PKCS11_KEY_UNSUITABLE'),
      /CKA_SIGN/,
    );

    hsm.rawKeyPair('keys', PIN, {
      label: 'p384',
      id: Buffer.from([4]),
      ecParams: Buffer.from('06052b81040022', 'hex'),
    });
    assert.match(
      await refused(() => open('pkcs11:token=keys;object=p384'), 'PKCS11_KEY_UNSUITABLE'),
      /P-256/,
    );

    // A public key object that belongs to another private key: the proof signature catches it.
    hsm.rawKeyPair('keys', PIN, { label: 'victim', id: Buffer.from([5]) });
    hsm.rawKeyPair('keys', PIN, { label: 'intruder', id: Buffer.from([6]) });
    assert.equal(hsm.deletePublicKey('keys', PIN, 'victim'), 1);
    hsm.setPublicKeyId('keys', PIN, 'intruder', Buffer.from([5]));
    assert.match(
      await refused(() => open('pkcs11:token=keys;object=victim'), 'PKCS11_KEY_UNSUITABLE'),
      /does not verify with its public key/,
    );

    hsm.rawKeyPair('keys', PIN, { label: 'half', id: Buffer.from([7]) });
    assert.equal(hsm.deletePublicKey('keys', PIN, 'half'), 1);
    assert.match(
      await refused(() => open('pkcs11:token=keys;object=half'), 'PKCS11_OBJECT_NOT_FOUND'),
      /no public key object with the same id or label/,
    );
  });

  test('a key the token would reveal is usable but comes with a warning; a generated one does not', async () => {
    hsm.rawKeyPair('keys', PIN, { label: 'exportable', id: Buffer.from([8]), extractable: true });
    const exportable = await open('pkcs11:token=keys;object=exportable');
    const generated = await open('pkcs11:token=keys;object=signer');
    try {
      assert.equal(exportable.neverRevealed, false);
      const [warning, ...more] = protectionWarnings(exportable);
      assert.match(warning ?? '', /object=exportable;id=%08 is not CKA_SENSITIVE or is CKA_EXTRACTABLE/);
      assert.equal(more.length, 0);
      assert.equal(generated.neverRevealed, true);
      assert.deepEqual(protectionWarnings(generated), []);
    } finally {
      exportable.close();
      generated.close();
    }
  });

  test('the TLS engine gets the exact key and never the PIN', async () => {
    const key = await openEngineTlsKey({
      uri: 'pkcs11:token=keys;object=signer',
      modulePath: SOFTHSM2_MODULE,
      pin: PIN,
      enginePath: defaultEnginePath(),
    });
    try {
      const { privateKeyEngine, privateKeyIdentifier } = key.contextOptions;
      assert.equal(privateKeyEngine, 'pkcs11');
      assert.match(
        privateKeyIdentifier,
        /^pkcs11:token=keys;serial=[0-9a-f]+;object=signer;id=[^;]+;type=private$/,
      );
      assert.ok(!privateKeyIdentifier.includes(PIN));
      assert.equal(key.description, 'pkcs11:token=keys;object=signer');
    } finally {
      key.close();
    }
  });
});
