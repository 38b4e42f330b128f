// The dashboard reached remotely through the daemon's TLS control listener, in
// a real browser: `baton dashboard` with BATON_REMOTE (HTTPS + token) gets a
// one-time link for the dashboard mounted on that listener; Chromium signs in
// over TLS end to end (verification on, pinned to the test certificate's key:
// a certificate it was not told about is still refused), gets a `__Host-`
// cookie that is Secure, HttpOnly and SameSite=Strict, and rolls a service
// back with the button. A link made for one door is refused at the other, a
// TLS session is worthless on the plain listener, the API beside the
// dashboard still wants its token, and the audit log has every sign-in and
// action with the door it came through.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createDaemon, serviceYaml, waitUntil, withFreePort, type TestDaemon } from '../helpers/daemon.ts';
import { makeCa, type TestCa } from '../fixtures/tls-certs.ts';

const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'dash'.repeat(4) + '0123456789abcdef0123456789abcdef';
const cleanups: Array<() => void> = [];
let d: TestDaemon;
let ca: TestCa;
let tlsPort: number;
let env: Record<string, string>;
let browser: Browser;
let context: BrowserContext;
let page: Page;

/** base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo: what Chromium's --ignore-certificate-errors-spki-list pins. */
function spkiHash(certPem: string): string {
  const der = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

function cli(args: string[], extra: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [path.resolve(import.meta.dirname, '../../bin/baton.js'), ...args], { env: { ...process.env, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (b: Buffer) => (stdout += b));
    c.stderr!.on('data', (b: Buffer) => (stderr += b));
    const t = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`baton ${args.join(' ')} did not finish within 20 s`));
    }, 20_000);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

async function remoteLogin(): Promise<string> {
  const r = await cli(['dashboard', '--json'], env);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { url: string }).url;
}

async function localLogin(): Promise<string> {
  const r = await d.cli(['dashboard', '--json'], 10_000);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { url: string }).url;
}

function httpsGet(urlPath: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: tlsPort, path: urlPath, ca: ca.caPem, headers, agent: false }, (res) => {
      let b = '';
      res.on('data', (c: Buffer) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: b }));
    }).on('error', reject);
  });
}

before(async () => {
  ca = makeCa({ after: (fn) => cleanups.push(fn) });
  const leaf = ca.write('control', ['127.0.0.1']);
  const tokenFile = path.join(ca.dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  d = await createDaemon({ start: false });
  // The daemon binds the TLS control port itself: another one if it was taken meanwhile.
  tlsPort = await withFreePort(async (port) => {
    await writeFile(d.configFile, [
      `listen: ["127.0.0.1:${d.port}"]`,
      'state_dir: ./state',
      'dashboard: { listen: "127.0.0.1:0" }',
      'control:',
      '  remote:',
      `    listen: "127.0.0.1:${port}"`,
      `    cert: ${JSON.stringify(leaf.certFile)}`,
      `    key: ${JSON.stringify(leaf.keyFile)}`,
      `    token_file: ${JSON.stringify(tokenFile)}`,
      'services:',
      serviceYaml(),
      '',
    ].join('\n'));
    await d.start();
    return port;
  });
  for (const v of ['v1', 'v2']) {
    const r = await d.cli(['deploy', 'web', await d.release(v)], 60_000);
    assert.equal(r.code, 0, r.stderr);
  }
  env = { BATON_REMOTE: `https://127.0.0.1:${tlsPort}`, BATON_TOKEN_FILE: tokenFile, BATON_CA_FILE: ca.caFile };
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Certificate verification stays on: only a certificate with this exact public key is accepted despite its unknown CA.
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spkiHash(readFileSync(leaf.certFile, 'utf8'))}`],
    timeout: 60_000,
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await context.newPage();
});

after(async () => {
  await browser?.close().catch(() => {});
  await d?.cleanup();
  for (const c of cleanups) c();
});

test('`baton dashboard` over the remote control API gives an https link; the browser signs in over TLS with a Secure __Host- cookie', async () => {
  const url = await remoteLogin();
  assert.equal(new URL(url).origin, `https://127.0.0.1:${tlsPort}`, url);
  const text = await cli(['dashboard'], env);
  assert.match(text.stdout, /^https:\/\/127\.0\.0\.1:\d+\/login\?token=\S+\n\(signs one browser in, once, within .*over TLS/);

  const res = await page.goto(url);
  assert.equal(res?.status(), 200);
  assert.equal(new URL(page.url()).origin, `https://127.0.0.1:${tlsPort}`);
  await page.getByRole('heading', { name: 'Services' }).waitFor();
  await page.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });
  assert.match(await page.locator('#svc-web-release').innerText(), /v2/);
  const security = await res!.securityDetails();
  assert.ok(security, 'the page came over TLS');
  assert.equal(security.subjectName, '127.0.0.1');
  assert.match(security.protocol ?? '', /TLS 1\.[23]/);

  const session = (await context.cookies()).find((c) => c.name.startsWith('__Host-baton_dash_'));
  assert.ok(session, `a __Host- session cookie: ${JSON.stringify(await context.cookies())}`);
  assert.equal(session.name, `__Host-baton_dash_${tlsPort}`);
  assert.equal(session.secure, true);
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');
  const fcp = await page.evaluate<number | null>(`performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null`);
  console.log(`dashboard over TLS: first contentful paint ${fcp?.toFixed(0)} ms (first visit, through the login redirect and the TLS handshake)`);
});

test('a rollback with the button over TLS (Origin https) switches the daemon back', async () => {
  await page.goto(`https://127.0.0.1:${tlsPort}/services/web`);
  await page.getByRole('button', { name: /Roll back to .*v1/ }).click();
  const dialog = page.locator('dialog#confirm');
  await dialog.waitFor({ state: 'visible', timeout: 10_000 });
  await Promise.all([page.waitForNavigation({ timeout: 20_000 }), dialog.getByRole('button', { name: 'Confirm' }).click()]);
  assert.match(await page.locator('.flash[role="alert"]').innerText(), /Rolling back web: deployment #\d+/);
  await waitUntil('the daemon to serve v1 again', async () => /v1/.test((await d.status('web')).services[0].currentRelease ?? ''), 30_000, 200);
  await page.locator('#deployment .state.done').waitFor({ timeout: 30_000 });
});

test('a link works only at its own door; a TLS session means nothing on the plain listener; the API still wants its token', async () => {
  const other = await browser.newContext();
  try {
    const p = await other.newPage();
    // A loopback link opened over TLS: refused, and still good where it belongs.
    const local = new URL(await localLogin());
    const crossed = await p.goto(`https://127.0.0.1:${tlsPort}${local.pathname}${local.search}`);
    assert.equal(crossed?.status(), 403);
    assert.match(await p.locator('main').innerText(), /made for the dashboard at another address/);
    assert.equal((await p.goto(local.href))?.status(), 200, 'the loopback link still signs in on the loopback listener');
    // A TLS link opened on the plain listener: refused.
    const remote = new URL(await remoteLogin());
    const back = await p.goto(`${local.origin}${remote.pathname}${remote.search}`);
    assert.equal(back?.status(), 403);
  } finally {
    await other.close();
  }
  // The TLS session's cookie presented to the plain listener under its name there: no page.
  const tlsCookie = (await context.cookies()).find((c) => c.name.startsWith('__Host-baton_dash_'))!;
  const localOrigin = new URL(await localLogin()).origin;
  const plain = await fetch(`${localOrigin}/`, { headers: { cookie: `baton_dash_${new URL(localOrigin).port}=${tlsCookie.value}` } });
  assert.equal(plain.status, 401);
  // The control API beside the dashboard: still 401 without the token.
  const api = await httpsGet('/v1/status', { cookie: `${tlsCookie.name}=${tlsCookie.value}` });
  assert.equal(api.status, 401);
  assert.equal(JSON.parse(api.body).error.code, 'CONTROL_UNAUTHORIZED');
  // An action posted from another Origin over TLS: refused, nothing changed.
  const before = (await d.status('web')).services[0].currentRelease;
  const csrf = await page.locator('form[action="/logout"] input[name="_csrf"]').getAttribute('value');
  const post = await new Promise<number>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: tlsPort, method: 'POST', path: '/services/web/rollback', ca: ca.caPem, agent: false, headers: { origin: `http://127.0.0.1:${tlsPort}`, cookie: `${tlsCookie.name}=${tlsCookie.value}`, 'content-type': 'application/x-www-form-urlencoded' } }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.end(`_csrf=${csrf}&confirmed=1`);
  });
  assert.equal(post, 403, 'an http:// Origin is not this https dashboard');
  assert.equal((await d.status('web')).services[0].currentRelease, before);

  // Sign-ins and actions through either door are in the daemon's audit log, refused ones too, without secrets.
  const text = await waitUntilAudit((lines) => lines.some((l) => l.via === 'dashboard-tls' && l.status === 403 && String(l.refused).includes('Origin mismatch')));
  const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const tls = lines.filter((l) => l.via === 'dashboard-tls');
  assert.ok(tls.some((l) => l.path === '/login' && l.status === 303 && String(l.actor).startsWith('dashboard session ')), JSON.stringify(tls));
  assert.ok(tls.some((l) => l.method === 'POST' && l.path === '/services/web/rollback' && l.status === 303 && String(l.actor).startsWith('dashboard session ') && l.peer === '127.0.0.1'), JSON.stringify(tls));
  assert.ok(tls.some((l) => l.path === '/login' && l.status === 403 && l.refused === 'login link door'), 'the loopback link tried over TLS');
  assert.ok(lines.some((l) => l.via === 'dashboard' && l.path === '/login' && l.status === 303), 'the loopback sign-in');
  assert.ok(!text.includes(tlsCookie.value) && !text.includes(csrf!), 'no cookie or CSRF token in the audit log');
});

/** The audit log's text once `done` holds for its lines (it is written in order, a moment after each answer). */
async function waitUntilAudit(done: (lines: Array<Record<string, unknown>>) => boolean): Promise<string> {
  let text = '';
  await waitUntil('the audit log to record the dashboard\'s requests', async () => {
    text = await readFile(path.join(d.dir, 'state', 'audit.log'), 'utf8').catch(() => '');
    return done(text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>));
  }, 10_000, 100);
  return text;
}

test('verification is on: a certificate whose key Chromium was not told about is refused', async () => {
  const stranger = ca.issue(['127.0.0.1']);
  const server = https.createServer({ cert: stranger.cert, key: stranger.key }, (_req, res) => res.end('should not be seen'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    const p = await context.newPage();
    await assert.rejects(p.goto(`https://127.0.0.1:${port}/`), /ERR_CERT_AUTHORITY_INVALID/);
    await p.close();
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
