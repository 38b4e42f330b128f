// The dashboard's sign-in rules, with a clock the test moves: a link works
// once and only before it expires, a session ends after its idle timeout, a
// CSRF token belongs to its session. And the HTML builder escapes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DashboardAuth, type Session } from '../../src/dashboard/auth.ts';
import { html, jsonScript } from '../../src/dashboard/html.ts';
import { decodePathPart } from '../../src/dashboard/web.ts';
import { parseConfig } from '../../src/config/index.ts';
import { BatonError } from '../../src/core/errors.ts';
import { diffConfig } from '../../src/daemon/reload.ts';

function setup(): { auth: DashboardAuth; clock: { now: number } } {
  const clock = { now: 1_000_000 };
  return { auth: new DashboardAuth({ sessionTimeoutMs: () => 60_000, now: () => clock.now }), clock };
}

function signedIn(auth: DashboardAuth): { session: Session; cookie: string } {
  const r = auth.redeem(auth.issueLogin(10_000).token);
  assert.ok(typeof r !== 'string', `login refused: ${String(r)}`);
  return r;
}

test('a login link signs in once; a second use is refused as used', () => {
  const { auth } = setup();
  const { token } = auth.issueLogin(10_000);
  const first = auth.redeem(token);
  assert.ok(typeof first !== 'string');
  assert.equal(auth.session(first.cookie), first.session);
  assert.equal(auth.redeem(token), 'used');
});

test('a link works only at the door it was made for, and a session only behind the door it was opened at', () => {
  const { auth } = setup();
  const { token } = auth.issueLogin(10_000, 'tls');
  // Refused at the loopback listener, and not spent by the attempt: it still works over TLS.
  assert.equal(auth.redeem(token, 'local'), 'door');
  const r = auth.redeem(token, 'tls');
  assert.ok(typeof r !== 'string', `login refused: ${String(r)}`);
  assert.equal(auth.session(r.cookie, 'tls'), r.session);
  assert.equal(auth.session(r.cookie, 'local'), null, 'a TLS session is not valid on the plain listener');
  const local = signedIn(auth);
  assert.equal(auth.session(local.cookie, 'tls'), null);
  assert.equal(auth.session(local.cookie, 'local'), local.session);
});

test('an expired, unknown, altered or malformed link is refused', () => {
  const { auth, clock } = setup();
  const { token, expiresAt } = auth.issueLogin(10_000);
  clock.now = expiresAt;
  assert.equal(auth.redeem(token), 'expired');
  const other = auth.issueLogin(10_000).token;
  const [id, secret] = other.split('.') as [string, string];
  const flipped = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A');
  assert.equal(auth.redeem(`${id}.${flipped}`), 'unknown');
  assert.equal(auth.redeem(`AAAAAAAAAAAA.${secret}`), 'unknown');
  assert.equal(auth.redeem('not-a-token'), 'malformed');
  assert.equal(auth.redeem(''), 'malformed');
  // The altered attempt did not spend the real link.
  assert.ok(typeof auth.redeem(other) !== 'string');
});

test('a session ends after its idle timeout; each request keeps it alive', () => {
  const { auth, clock } = setup();
  const { cookie } = signedIn(auth);
  clock.now += 50_000;
  assert.ok(auth.session(cookie));
  clock.now += 50_000;
  assert.ok(auth.session(cookie), 'the request 50 s before kept it alive');
  clock.now += 60_001;
  assert.equal(auth.session(cookie), null);
  assert.equal(auth.session(undefined), null);
  assert.equal(auth.session('garbage'), null);
});

test('a CSRF token is checked against its own session only; sign-out ends the session', () => {
  const { auth } = setup();
  const a = signedIn(auth);
  const b = signedIn(auth);
  assert.equal(auth.checkCsrf(a.session, a.session.csrf), true);
  assert.equal(auth.checkCsrf(a.session, b.session.csrf), false);
  assert.equal(auth.checkCsrf(a.session, undefined), false);
  assert.equal(auth.checkCsrf(a.session, a.session.csrf.slice(1)), false);
  auth.end(a.session);
  assert.equal(auth.session(a.cookie), null);
  assert.ok(auth.session(b.cookie));
});

test('html escapes every interpolated value; JSON in a script cannot close it', () => {
  const evil = '<script>alert("x")</script>&\'';
  assert.equal(html`<p title="${evil}">${evil}</p>`.value, '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</p>');
  assert.equal(html`<ul>${['a<', html`<li>b</li>`]}</ul>`.value, '<ul>a&lt;<li>b</li></ul>');
  assert.doesNotMatch(jsonScript('h', { s: '</script><script>x()</script>' }).value.slice(0, -9), /<\/script>/);
});

test('the dashboard listens on loopback only, never on a port the proxy uses', () => {
  const base = 'listen: ["0.0.0.0:8080"]\nservices:\n  web:\n    command: "exec app"\n';
  assert.deepEqual(parseConfig(base + 'dashboard: { listen: "127.0.0.1:9190" }\n', 'baton.yaml').dashboard?.listener, { host: '127.0.0.1', port: 9190 });
  assert.equal(parseConfig(base + 'dashboard: { listen: "127.0.0.1:0" }\n', 'baton.yaml').dashboard?.listener.port, 0);
  assert.equal(parseConfig(base, 'baton.yaml').dashboard, null);
  assert.throws(() => parseConfig(base + 'dashboard: { listen: "0.0.0.0:9190" }\n', 'baton.yaml'), (e) => e instanceof BatonError && /dashboard\.listen: expected a loopback address/.test(e.details.join('\n')));
  assert.throws(() => parseConfig(base + 'dashboard: { listen: "127.0.0.1:8080" }\n', 'baton.yaml'), (e) => e instanceof BatonError && /dashboard\.listen: address "127\.0\.0\.1:8080" clashes with "0\.0\.0\.0:8080"/.test(e.details.join('\n')));
});

test('a reload that turns the dashboard on, off or moves it is refused; a new session timeout applies', () => {
  const base = 'listen: ["127.0.0.1:8080"]\nservices:\n  web:\n    command: "exec app"\n';
  const off = parseConfig(base, 'baton.yaml');
  const on = parseConfig(base + 'dashboard: { listen: "127.0.0.1:9190" }\n', 'baton.yaml');
  const moved = parseConfig(base + 'dashboard: { listen: "127.0.0.1:9191" }\n', 'baton.yaml');
  const longer = parseConfig(base + 'dashboard: { listen: "127.0.0.1:9190", session_timeout: 24h }\n', 'baton.yaml');
  assert.match(diffConfig(off, on).refused.join('\n'), /^dashboard: .*restart/);
  assert.match(diffConfig(on, off).refused.join('\n'), /^dashboard: .*restart/);
  assert.match(diffConfig(on, moved).refused.join('\n'), /^dashboard\.listen: .*restart/);
  const plan = diffConfig(on, longer);
  assert.deepEqual(plan.refused, []);
  assert.ok(plan.changes.some((c) => c.startsWith('dashboard.session_timeout') && c.includes('applies now')), plan.changes.join('; '));
});

test('a path segment with a malformed %-escape is the request\'s fault: BAD_REQUEST naming the path (a 400 page, not a 500)', () => {
  assert.equal(decodePathPart('web%2Fa', '/services/web%2Fa'), 'web/a');
  assert.throws(
    () => decodePathPart('%E0%A4%A', '/services/%E0%A4%A/targets/h1/drain'),
    (err: unknown) => err instanceof BatonError && err.code === 'BAD_REQUEST' && err.message.includes('"/services/%E0%A4%A/targets/h1/drain"'),
  );
});
