// The dashboard end to end, in a real browser: Debian's Chromium driven by
// playwright-core against a real daemon under load. Sign-in through one-time
// links, a deploy seen live on the page, a canary promoted and a rollback
// done with the buttons (checked through `baton status --json`), log follow,
// and actions refused without a session, a good CSRF token or the right
// Origin. The run takes screenshots of the main pages (into docs/screenshots/
// with BATON_SCREENSHOTS=1, else into a temporary directory).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type RunningLoad } from '../helpers/load.ts';
import { screenshotDir } from '../helpers/screenshots.ts';
import { assertAccessible } from '../helpers/accessibility.ts';

const shots = screenshotDir();
const SHOTS = shots.dir;
const CHROMIUM = '/usr/bin/chromium';
const CANARY = `canary:
  steps: [{ weight: 10 }, { pause: promote }, { weight: 50 }, { pause: promote }, { weight: 100 }]
hooks:
  build: "echo compiling assets for $BATON_RELEASE; echo 42 files written"`;

let d: TestDaemon;
let browser: Browser;
/** Every URL the browser asked for that is not the dashboard's (must stay empty: no CDN, no third party). */
const foreign: string[] = [];
let context: BrowserContext;
let page: Page;
let load: RunningLoad | null = null;

async function loginUrl(ttl?: string): Promise<{ url: string; expiresAt: number }> {
  const r = await d.cli(['dashboard', '--json', ...(ttl ? ['--ttl', ttl] : [])], 10_000);
  assert.equal(r.code, 0, `baton dashboard failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { url: string; expiresAt: number };
}

async function current(): Promise<{ current: string | null; standby: string | null; canary: { weight: number; waiting: string | null } | null }> {
  const s = (await d.status('web')).services[0];
  return { current: s.currentRelease, standby: s.standbyRelease, canary: s.canary };
}

/** Requests/s per release as the page's live table shows them now. */
function shownRates(p: Page): Promise<Record<string, number>> {
  // A string: it runs in the page (this file is type-checked without the DOM's types).
  return p.evaluate<Record<string, number>>(`(() => {
    const out = {};
    for (const tr of document.querySelectorAll('#now tr[data-release]')) {
      out[tr.dataset.release] = Number(tr.querySelector('[data-k="rps"]')?.textContent ?? 'NaN');
    }
    return out;
  })()`);
}

/** The top of the page, down to the end of its content (no empty screen below a short page). */
async function shot(p: Page, name: string): Promise<void> {
  await p.evaluate('window.scrollTo(0, 0)');
  const bottom = await p.evaluate<number>(`Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)`);
  const { width, height } = p.viewportSize()!;
  await p.screenshot({ path: path.join(SHOTS, name), clip: { x: 0, y: 0, width, height: Math.min(height, bottom + 8) } });
}


async function confirmAction(p: Page, button: string): Promise<void> {
  await p.getByRole('button', { name: button, exact: true }).click();
  const dialog = p.locator('dialog#confirm');
  await dialog.waitFor({ state: 'visible', timeout: 10_000 });
  await Promise.all([p.waitForNavigation({ timeout: 20_000 }), dialog.getByRole('button', { name: 'Confirm' }).click()]);
}

before(async () => {
  // web takes the load; api is there so the overview has more than one row.
  d = await createDaemon({ start: false, services: [serviceYaml({ extra: `default: true\n${CANARY}` }), serviceYaml({ name: 'api', instances: 1, extra: 'hosts: [api.example.test]' })].join('\n') });
  await appendFile(d.configFile, 'dashboard: { listen: "127.0.0.1:0" }\n');
  await d.start();
  for (const service of ['web', 'api']) {
    const r = await d.cli(['deploy', service, await d.release('v1')], 60_000);
    assert.equal(r.code, 0, r.stderr);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // A fresh profile per run comes from playwright itself (it passes a new --user-data-dir and removes it at close).
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000,
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  context.on('request', (req) => {
    if (new URL(req.url()).hostname !== '127.0.0.1') foreign.push(req.url());
  });
  page = await context.newPage();
});

after(async () => {
  if (load) await load.stop();
  await browser?.close().catch(() => {});
  await d?.cleanup();
  shots.done();
});

test('a one-time link signs the browser in; a used or expired link is refused', async () => {
  const { url } = await loginUrl();
  const res = await page.goto(url);
  assert.equal(res?.status(), 200);
  assert.equal(new URL(page.url()).pathname, '/');
  await page.getByRole('heading', { name: 'Services' }).waitFor();
  await page.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });
  assert.match(await page.locator('#svc-web-release').innerText(), /v1/);
  assert.match(await page.locator('#host').innerText(), /load balancer in front: ready/);
  await assertAccessible(page, 'the overview');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name.startsWith('baton_dash_'));
  assert.ok(session, 'a session cookie was set');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(session.path, '/');

  // First paint on localhost, measured by the browser (reported, not asserted: no wall-clock bounds).
  const fcp = await page.evaluate<number | null>(`performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null`);
  const transfer = await page.evaluate<unknown>(`performance.getEntriesByType('resource').map((e) => ({ name: e.name.split('/').pop(), bytes: e.encodedBodySize }))`);
  await page.reload();
  await page.getByRole('heading', { name: 'Services' }).waitFor();
  const warm = await page.evaluate<number | null>(`performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null`);
  console.log(`dashboard overview: first contentful paint ${fcp?.toFixed(0)} ms (first visit, through the login redirect), ${warm?.toFixed(0)} ms (again, assets cached); assets ${JSON.stringify(transfer)}; load ${os.loadavg()[0]!.toFixed(1)}`);

  // The same link again, in a browser with no session: refused.
  const other = await browser.newContext();
  try {
    const p = await other.newPage();
    const again = await p.goto(url);
    assert.equal(again?.status(), 403);
    assert.match(await p.locator('main').innerText(), /already used/);
    // An expired link: refused, and the page says so.
    const short = await loginUrl('1s');
    await waitUntil('the 1 s link to expire', () => Date.now() > short.expiresAt + 50, 5000);
    const late = await p.goto(short.url);
    assert.equal(late?.status(), 403);
    assert.match(await p.locator('main').innerText(), /expired/);
    // And no session means no page.
    const anon = await p.goto(new URL('/services/web', url).href);
    assert.equal(anon?.status(), 401);
  } finally {
    await other.close();
  }
});

test('a deploy under load shows live: the traffic moves from v1 to v2 on the page', async () => {
  load = startLoad({ url: d.url + '/', concurrency: 2, thinkMs: 5, maxMs: 120_000 });
  await load.waitFor(50, 10_000);
  await page.goto(new URL('/services/web', page.url()).href);
  await page.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });
  const fcp = await page.evaluate<number | null>(`performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null`);
  console.log(`dashboard service page (with uPlot): first contentful paint ${fcp?.toFixed(0)} ms`);
  await waitUntil('the page to show v1 serving', async () => {
    const r = await shownRates(page);
    return Object.entries(r).some(([rel, rps]) => /v1/.test(rel) && rps > 0);
  }, 20_000, 200);

  const deploy = d.cli(['deploy', 'web', await d.release('v2')], 60_000);
  // The page, without a reload, shows v2 taking the traffic and v1 at zero.
  await waitUntil('the page to show all traffic on v2', async () => {
    const r = await shownRates(page);
    const v2 = Object.entries(r).find(([rel]) => /v2/.test(rel));
    const v1 = Object.entries(r).filter(([rel]) => /v1/.test(rel));
    return v2 !== undefined && v2[1] > 0 && v1.every(([, rps]) => rps === 0);
  }, 30_000, 200);
  const done = await deploy;
  assert.equal(done.code, 0, done.stderr);
  // The timeline shows the deployment's steps with their timings.
  await page.locator('#deployment .timeline', { hasText: 'draining' }).waitFor({ timeout: 15_000 });
  assert.match(await page.locator('#deployment').innerText(), /preparing[\s\S]*build hook[\s\S]*shifting[\s\S]*draining/);
  // The hook's own output, under the timeline.
  await page.locator('#deployment details.hook summary', { hasText: 'build hook output' }).click();
  assert.match(await page.locator('#deployment details.hook pre').innerText(), /compiling assets for .*v2[\s\S]*42 files written/);
  await page.locator('section', { has: page.locator('#deployment') }).screenshot({ path: path.join(SHOTS, 'timeline.png') });
  // The charts' legends name both releases.
  const legend = await page.locator('.chart[data-metric="rps"] .u-legend').innerText();
  assert.match(legend, /v1/);
  assert.match(legend, /v2/);
  await shot(page, 'service.png');
  await assertAccessible(page, 'the service page');
  // The overview, with the load still running.
  await page.goto(new URL('/', page.url()).href);
  await waitUntil('the overview to show web\'s traffic', async () => Number(await page.locator('#svc-web-rps').innerText()) > 0, 15_000, 200);
  assert.match(await page.locator('#svc-web-release').innerText(), /v2/);
  assert.match(await page.locator('#svc-web-standby').innerText(), /v1/);
  assert.match(await page.locator('#svc-api-instances').innerText(), /1\/1 healthy/);
  assert.equal(await page.locator('#svc-web-failed').innerText(), '0', 'no request failed by baton in the last seconds');
  await shot(page, 'overview.png');
  await page.goBack();
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true, storageState: await context.storageState() });
  try {
    const p = await phone.newPage();
    await p.goto(page.url());
    await p.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });
    await p.screenshot({ path: path.join(SHOTS, 'phone.png') });
    // Readable on a phone: the page does not scroll sideways.
    const wide = await p.evaluate<number>(`document.documentElement.scrollWidth - document.documentElement.clientWidth`);
    const culprits = await p.evaluate<string[]>(`[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).slice(0, 8).map((e) => e.tagName + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).replace(/ /g, '.') : ''))`);
    assert.ok(wide <= 1, `the page is ${wide}px wider than a phone screen: ${culprits.join(', ')}`);
  } finally {
    await phone.close();
  }
});

test('a canary promoted with the button moves the daemon\'s weight', async () => {
  const deploy = d.cli(['deploy', 'web', await d.release('v3'), '--strategy', 'canary'], 120_000);
  await waitUntil('the canary to wait at 10%', async () => (await current()).canary?.waiting === 'promote', 60_000, 200);
  await page.locator('section.canary', { hasText: '10%' }).waitFor({ timeout: 15_000 });
  await shot(page, 'canary.png');
  await assertAccessible(page, 'the service page with a canary');
  await confirmAction(page, 'Promote');
  assert.match(await page.locator('.flash[role="alert"]').innerText(), /v3.* now gets 50% of web's visitors/);
  await waitUntil('the daemon to hold the canary at 50%', async () => {
    const c = (await current()).canary;
    return c?.weight === 50 && c.waiting === 'promote';
  }, 30_000, 200);
  await page.locator('section.canary', { hasText: '50%' }).waitFor({ timeout: 15_000 });
  await confirmAction(page, 'Promote to 100%');
  const done = await deploy;
  assert.equal(done.code, 0, done.stderr);
  const s = await current();
  assert.match(s.current ?? '', /v3/);
  assert.match(s.standby ?? '', /v2/);
});

test('a rollback from the page switches the daemon back', async () => {
  await page.reload();
  const button = page.getByRole('button', { name: /Roll back to .*v2/ });
  await button.waitFor({ timeout: 15_000 });
  // From the keyboard: Enter opens the confirmation with the focus on Cancel; Escape closes it and changes nothing.
  await button.focus();
  await page.keyboard.press('Enter');
  const dialog = page.locator('dialog#confirm');
  await dialog.waitFor({ state: 'visible', timeout: 10_000 });
  assert.equal(await page.evaluate<string>(`document.activeElement.textContent`), 'Cancel');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden', timeout: 10_000 });
  assert.match(await page.evaluate<string>(`document.activeElement.textContent`), /Roll back to/, 'the focus is back on the button');
  assert.match((await current()).current ?? '', /v3/, 'Escape changed nothing');
  // Enter again, Tab to Confirm, Enter: the rollback runs.
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'visible', timeout: 10_000 });
  await page.keyboard.press('Tab');
  await Promise.all([page.waitForNavigation({ timeout: 20_000 }), page.keyboard.press('Enter')]);
  assert.match(await page.locator('.flash[role="alert"]').innerText(), /Rolling back web: deployment #\d+/);
  await waitUntil('the daemon to serve v2 again', async () => /v2/.test((await current()).current ?? ''), 30_000, 200);
  await page.locator('#deployment', { hasText: 'rollback' }).waitFor({ timeout: 15_000 });
  await page.locator('#deployment .state.done').waitFor({ timeout: 30_000 });
  await waitUntil('the page to show the traffic back on v2', async () => Object.entries(await shownRates(page)).some(([rel, rps]) => /v2/.test(rel) && rps > 0), 20_000, 200);
  await shot(page, 'rollback.png');

  await page.getByRole('link', { name: 'Deployment history' }).click();
  const items = page.locator('ol.history > li');
  await items.first().waitFor();
  assert.ok((await items.count()) >= 4, 'v1, v2, v3 and the rollback are listed');
  await items.first().locator('summary').click();
  assert.match(await items.first().innerText(), /rollback[\s\S]*shifting/);
  await shot(page, 'history.png');
  await assertAccessible(page, 'the history page');

  const result = await load!.stop();
  load = null;
  assert.equal(result.failed, 0, `failed requests: ${result.errors.join('; ')}`);
  for (const v of ['v1', 'v2', 'v3']) assert.ok(Object.keys(result.bodies).some((b) => b.includes(v)), `the load saw ${v}: ${JSON.stringify(result.bodies)}`);
});

test('a canary aborted with the button: all traffic back on the stable release, the deploy fails', async () => {
  const deploy = d.cli(['deploy', 'web', await d.release('v4'), '--strategy', 'canary'], 120_000);
  await waitUntil('the canary to wait at 10%', async () => (await current()).canary?.waiting === 'promote', 60_000, 200);
  await page.goto(new URL('/services/web', page.url()).href);
  await page.locator('section.canary', { hasText: 'v4' }).waitFor({ timeout: 15_000 });
  await confirmAction(page, 'Abort canary');
  assert.match(await page.locator('.flash[role="alert"]').innerText(), /Deployment #\d+ aborted: all traffic is back on the stable release/);
  const done = await deploy;
  assert.notEqual(done.code, 0, 'an aborted canary deploy exits non-zero');
  assert.match(done.stdout + done.stderr, /aborted by the operator/);
  const s = await current();
  assert.equal(s.canary, null);
  assert.match(s.current ?? '', /v2/);
  await page.locator('section.canary').waitFor({ state: 'detached', timeout: 15_000 });
});

test('instance logs: the tail, then new lines as they are written', async () => {
  await page.goto(new URL('/services/web/logs', page.url()).href);
  assert.match(await page.locator('#log').innerText(), /listening on/);
  await page.getByLabel(/Follow/).check();
  await page.locator('#live-state', { hasText: 'following' }).waitFor({ timeout: 10_000 });
  const file = (await d.status('web')).services[0].instances.find((i: { role: string }) => i.role === 'current');
  assert.ok(file, 'a current instance');
  const marker = `dashboard follow marker ${process.pid}`;
  await waitUntil('the followed log to show a new line', async () => {
    // Written as the instance would: appended to its log file.
    await appendFile(path.join(d.dir, 'state/logs/web', `${file.id}.log`), `${marker}\n`);
    return (await page.locator('#log').innerText()).includes(marker);
  }, 15_000, 500);
  await shot(page, 'logs.png');
  await assertAccessible(page, 'the logs page');
});

test('an action without a session, with a bad CSRF token or from another origin is refused', async () => {
  const base = new URL(page.url()).origin;
  const before = await current();
  const cookie = (await context.cookies()).filter((c) => c.name.startsWith('baton_dash_')).map((c) => `${c.name}=${c.value}`).join('; ');
  await page.goto(base + '/services/web');
  const csrf = await page.locator('form[action="/logout"] input[name="_csrf"]').getAttribute('value');
  assert.ok(csrf);
  const post = (headers: Record<string, string>, body: string): Promise<Response> =>
    fetch(base + '/services/web/rollback', { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  const noSession = await post({ origin: base }, `_csrf=${csrf}&confirmed=1`);
  assert.equal(noSession.status, 403);
  const badCsrf = await post({ origin: base, cookie }, `_csrf=${'x'.repeat(csrf.length)}&confirmed=1`);
  assert.equal(badCsrf.status, 403);
  const noCsrf = await post({ origin: base, cookie }, 'confirmed=1');
  assert.equal(noCsrf.status, 403);
  const otherOrigin = await post({ origin: 'http://evil.example', cookie }, `_csrf=${csrf}&confirmed=1`);
  assert.equal(otherOrigin.status, 403);
  const rebound = await new Promise<number>((resolve, reject) => {
    const u = new URL(base);
    http.get({ host: u.hostname, port: u.port, path: '/', headers: { cookie, host: 'evil.example' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
  assert.equal(rebound, 403, 'a Host that is not an address or localhost (DNS rebinding) is refused');
  assert.deepEqual(await current(), before, 'nothing changed');
  // The same request from the page's own form does go through (the refusals above are the checks, not a broken form).
  const ok = await post({ origin: base, cookie }, `_csrf=${csrf}`);
  assert.equal(ok.status, 200, 'without "confirmed" the answer is the confirmation page');
  assert.match(await ok.text(), /Roll web back/);
  assert.deepEqual(foreign, [], 'the pages asked for nothing but the dashboard');
});
