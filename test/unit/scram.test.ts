import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { PasswordError, scramKeys, scramSha256Verifier } from '../../src/registry/scram.js';

/**
 * The SCRAM-SHA-256 keys against the exchange of RFC 7677 section 3 (user "user", password "pencil"): a
 * server holding our StoredKey and ServerKey must accept that client proof and send that signature.
 */
describe('scramKeys (RFC 7677 test vector)', () => {
  const salt = Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64');
  const authMessage = [
    'n=user,r=rOprNGfwEbeRWgbNEkqO',
    'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
    'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  ].join(',');
  const { clientKey, storedKey, serverKey } = scramKeys('pencil', salt, 4096);
  const hmac = (key: Buffer) => createHmac('sha256', key).update(authMessage).digest();

  it('the client proof of the RFC verifies against our StoredKey', () => {
    const proof = Buffer.from('dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=', 'base64');
    const clientSignature = hmac(storedKey);
    const recovered = Buffer.from(proof.map((b, i) => b ^ clientSignature[i]!));
    assert.deepEqual(recovered, clientKey);
  });

  it('our ServerKey produces the RFC server signature', () => {
    assert.equal(hmac(serverKey).toString('base64'), '6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
  });
});

describe('scramSha256Verifier', () => {
  it('has the form PostgreSQL stores, with a fresh salt each time', () => {
    const a = scramSha256Verifier('a long enough password!');
    const b = scramSha256Verifier('a long enough password!');
    assert.match(a, /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=:[A-Za-z0-9+/]{43}=$/);
    assert.notEqual(a, b);
  });

  it('refuses passwords it cannot prepare as PostgreSQL does, and short ones', () => {
    assert.throws(() => scramSha256Verifier(''), PasswordError);
    assert.throws(() => scramSha256Verifier('pässwörd-that-is-long-enough'), /printable ASCII/);
    assert.throws(() => scramSha256Verifier('short'), /shorter than 16 characters/);
  });
});
