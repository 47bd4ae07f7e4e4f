import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { cookieValue, csrfMatches, SessionStore, sessionCredential } from '../../src/dashboard/sessions.js';

const request = (cookie?: string) => ({ headers: cookie === undefined ? {} : { cookie } }) as IncomingMessage;
const idOf = (setCookie: string) => setCookie.split(';')[0] ?? '';

test('a login makes an HttpOnly SameSite=Strict cookie holding only a random id', () => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 10, secure: false });
  const { cookie, session } = store.create('admin', 'alice');
  assert.match(cookie, /^agd_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=60$/);
  assert.equal(store.of(request(idOf(cookie)))?.name, 'alice');
  assert.equal(sessionCredential(session).role, 'admin');
  assert.equal(sessionCredential(session).via, 'session');
  // Another login gets another id and another CSRF token.
  const other = store.create('read', 'bob');
  assert.notEqual(idOf(other.cookie), idOf(cookie));
  assert.notEqual(other.session.csrf, session.csrf);
});

test('over TLS the cookie is Secure and __Host- prefixed', () => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 10, secure: true });
  const { cookie } = store.create('read', 'bob');
  assert.match(cookie, /^__Host-agd_session=[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=60; Secure$/);
  assert.ok(store.of(request(idOf(cookie))) !== undefined);
});

test('unknown, malformed, expired and logged-out sessions are not sessions', () => {
  let now = 1000;
  const store = new SessionStore({ ttlMs: 10_000, maxSessions: 10, secure: false, now: () => now });
  const { cookie } = store.create('admin', 'alice');
  const id = idOf(cookie);
  assert.equal(store.of(request()), undefined);
  assert.equal(store.of(request('agd_session=short')), undefined);
  assert.equal(store.of(request(`agd_session=${'A'.repeat(43)}`)), undefined);
  assert.equal(store.of(request(`other=1; ${id}; more=2`))?.name, 'alice');
  now += 10_000;
  assert.equal(store.of(request(id)), undefined, 'expired');
  const again = store.create('admin', 'alice');
  assert.equal(store.isLive(again.session), true);
  const cleared = store.end(request(idOf(again.cookie)));
  assert.match(cleared, /^agd_session=; .*Max-Age=0/);
  assert.equal(store.of(request(idOf(again.cookie))), undefined, 'logged out');
  assert.equal(store.isLive(again.session), false, 'its open streams end too');
});

test('the number of sessions is bounded: the oldest ends first', () => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 2, secure: false });
  const first = store.create('read', 'a');
  const second = store.create('read', 'b');
  store.create('read', 'c');
  assert.equal(store.size, 2);
  assert.equal(store.of(request(idOf(first.cookie))), undefined);
  assert.equal(store.of(request(idOf(second.cookie)))?.name, 'b');
});

test('CSRF tokens match only exactly', () => {
  const store = new SessionStore({ ttlMs: 60_000, maxSessions: 2, secure: false });
  const { session } = store.create('admin', 'a');
  assert.equal(csrfMatches(session, session.csrf), true);
  assert.equal(csrfMatches(session, undefined), false);
  assert.equal(csrfMatches(session, ''), false);
  assert.equal(csrfMatches(session, `${session.csrf}x`), false);
  assert.equal(csrfMatches(session, session.csrf.slice(1)), false);
});

test('cookieValue reads one cookie out of a header', () => {
  assert.equal(cookieValue('a=1; b=2', 'b'), '2');
  assert.equal(cookieValue('a=1;b=2', 'a'), '1');
  assert.equal(cookieValue('ab=1', 'a'), undefined);
  assert.equal(cookieValue(undefined, 'a'), undefined);
});
