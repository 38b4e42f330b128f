// Front services in the dashboard, end to end: a front daemon (a service with
// `targets:`) with two real host daemons behind it on their own loopback
// addresses, Debian's Chromium driven by playwright-core, and load through
// the front counting every outcome. The overview lists the front's targets;
// its page shows them with live per-target charts; a target drained with the
// page's button is out in the daemon (its status says so, it gets no new
// request) while the load sees 0 failed, and undrained with the button it
// takes requests again. Actions need the session, the CSRF token and a
// confirmation, and land in the audit log. Screenshot: front.png (into
// docs/screenshots/ with BATON_SCREENSHOTS=1, else a temporary directory).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ControlClient } from '../../src/control/client.ts';
import { createDaemon, serviceYaml, waitUntil, type TestDaemon } from '../helpers/daemon.ts';
import { startLoad, type RunningLoad } from '../helpers/load.ts';
import { screenshotDir } from '../helpers/screenshots.ts';
import { assertAccessible } from '../helpers/accessibility.ts';

const shots = screenshotDir();
const CHROMIUM = '/usr/bin/chromium';
const HOSTS = [
  { name: 'h1', address: '127.0.0.2' },
  { name: 'h2', address: '127.0.0.3' },
];

let hosts: TestDaemon[] = [];
let front: TestDaemon;
let browser: Browser;
let context: BrowserContext;
let page: Page;
let base = '';
let load: RunningLoad | null = null;
/** Every URL the browser asked for that is not the dashboard's (must stay empty). */
const foreign: string[] = [];

/** The front daemon's view of each target, asked on its control socket (a CLI takes a second to start on a busy machine). */
async function targets(): Promise<Record<string, any>> {
  const s = await new ControlClient(path.join(front.dir, 'state', 'baton.sock')).get<any>('/status');
  return Object.fromEntries(s.fronts[0].targets.map((t: any) => [t.name, t]));
}

/** Requests/s per target as the page's live table shows them now. */
function shownRates(p: Page): Promise<Record<string, number>> {
  return p.evaluate<Record<string, number>>(`(() => {
    const out = {};
    for (const tr of document.querySelectorAll('#now tr[data-release]')) out[tr.dataset.release] = Number(tr.querySelector('[data-k="rps"]')?.textContent ?? 'NaN');
    return out;
  })()`);
}


/** The audit log's text once `done` holds for it (written a moment after each answer). */
async function auditLog(done: (text: string) => boolean, what: string): Promise<string> {
  let text = '';
  await waitUntil(what, async () => {
    text = await readFile(path.join(front.dir, 'state', 'audit.log'), 'utf8').catch(() => '');
    return done(text);
  }, 10_000, 100);
  return text;
}

before(async () => {
  hosts = await Promise.all(HOSTS.map((h) => createDaemon({ listenHost: h.address, services: serviceYaml({ instances: 1 }) })));
  await Promise.all(hosts.map(async (d, i) => {
    const r = await d.cli(['deploy', 'web', await d.release(`${HOSTS[i]!.name}-v1`)], 60_000);
    assert.equal(r.code, 0, r.stderr);
  }));
  front = await createDaemon({ services: '', start: false });
  await front.writeConfig([
    '  shop:',
    '    targets:',
    `      h1: "${HOSTS[0]!.address}:${hosts[0]!.port}"`,
    `      h2: { address: "${HOSTS[1]!.address}:${hosts[1]!.port}", weight: 2 }`,
    '    health: { path: /_baton/health, interval: 200ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 2 }',
    '    upstream: { connect_timeout: 1s }',
    '    drain_timeout: 5s',
  ].join('\n'));
  await appendFile(front.configFile, 'dashboard: { listen: "127.0.0.1:0" }\n');
  await front.start();
  await waitUntil('both targets in rotation at the front', async () => Object.values(await targets()).every((t) => t.inRotation), 15_000);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000,
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  context.on('request', (req) => {
    if (new URL(req.url()).hostname !== '127.0.0.1') foreign.push(req.url());
  });
  page = await context.newPage();
  const r = await front.cli(['dashboard', '--json'], 10_000);
  assert.equal(r.code, 0, `baton dashboard failed: ${r.stderr}`);
  const { url } = JSON.parse(r.stdout) as { url: string };
  base = new URL(url).origin;
  assert.equal((await page.goto(url))?.status(), 200);
});

after(async () => {
  if (load) await load.stop();
  await browser?.close().catch(() => {});
  await Promise.all([front?.cleanup(), ...hosts.map((h) => h.cleanup())]);
  shots.done();
});

test('the overview lists the front service with its targets, live', async () => {
  await page.goto(base + '/');
  await page.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });
  const section = page.locator('section.front[data-front="shop"]');
  await section.getByRole('heading', { name: /shop/ }).waitFor();
  assert.match(await page.locator('#front-shop-count').innerText(), /2 of 2 targets in rotation/);
  for (const h of HOSTS) assert.match(await page.locator(`#front-shop-${h.name}-state`).innerText(), /in rotation/);
  assert.equal(await page.locator('#front-shop-h2-weight').innerText(), '2');
  // The services' table is left out: this daemon runs no instance of its own.
  assert.equal(await page.locator('table.services').count(), 0);
  await page.getByRole('navigation', { name: 'Services' }).getByRole('link', { name: 'shop' }).waitFor();
  await assertAccessible(page, 'the overview with a front service');

  load = startLoad({ url: `${front.url}/`, concurrency: 2, thinkMs: 5, keepAlive: true, maxMs: 180_000 });
  await load.waitFor(50, 20_000);
  await waitUntil('the overview to show traffic on both targets', async () => {
    for (const h of HOSTS) if (!(Number(await page.locator(`#front-shop-${h.name}-rps`).innerText()) > 0)) return false;
    return true;
  }, 20_000, 200);
  assert.equal(await page.locator('#front-shop-h1-failed').innerText(), '0');
  assert.match(await page.locator('#front-shop-h1-p99').innerText(), /ms/);
});

test('the front\'s page: targets, live per-target charts that move with the traffic, counters', async () => {
  await openService('shop');
  const rows = page.locator('#targets tr[data-target]');
  assert.deepEqual(await rows.evaluateAll((trs) => trs.map((tr) => (tr as unknown as { dataset: Record<string, string> }).dataset['target'])), ['h1', 'h2']);
  for (const h of HOSTS) await page.getByRole('button', { name: `Drain ${h.name}`, exact: true }).waitFor();
  await waitUntil('the live table to show both targets taking traffic', async () => {
    const r = await shownRates(page);
    return (r['h1'] ?? 0) > 0 && (r['h2'] ?? 0) > 0;
  }, 20_000, 200);
  // The charts have a line per target, and they move: the requests chart is redrawn as new seconds arrive.
  const legend = await page.locator('.chart[data-metric="rps"] .u-legend').innerText();
  assert.match(legend, /h1/);
  assert.match(legend, /h2/);
  const canvas = (): Promise<string> => page.evaluate<string>(`document.querySelector('.chart[data-metric="rps"] canvas').toDataURL()`);
  const first = await canvas();
  await waitUntil('the requests chart to be redrawn with new points', async () => (await canvas()) !== first, 10_000, 200);
  // The counters since the daemon started grow while the load runs.
  const requests = async (t: string): Promise<number> => Number((await page.locator(`#counters tr[data-target="${t}"] [data-k="requests"]`).innerText()).replace(/,/g, ''));
  const before = await requests('h1');
  await waitUntil('the counters to grow', async () => (await requests('h1')) > before, 10_000, 200);
  await assertAccessible(page, 'the front service\'s page');

  // Readable on a phone: the page does not scroll sideways.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true, storageState: await context.storageState() });
  try {
    const p = await phone.newPage();
    for (const where of ['/services/shop', '/']) {
      await p.goto(base + where);
      await p.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });
      const wide = await p.evaluate<number>(`document.documentElement.scrollWidth - document.documentElement.clientWidth`);
      const culprits = await p.evaluate<string[]>(`[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1).slice(0, 8).map((e) => e.tagName + (e.id ? '#' + e.id : ''))`);
      assert.ok(wide <= 1, `${where} is ${wide}px wider than a phone screen: ${culprits.join(', ')}`);
    }
  } finally {
    await phone.close();
  }
});

test('drain by the button: the target is out in the daemon under load (0 failed); undrain brings it back', async () => {
  await openService('shop');
  // From the keyboard: Enter on the button opens the confirmation; Escape changes nothing.
  const drain = page.getByRole('button', { name: 'Drain h2', exact: true });
  await drain.focus();
  await page.keyboard.press('Enter');
  const dialog = page.locator('dialog#confirm');
  await dialog.waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await dialog.innerText(), /Drain h2 at the front of shop/);
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden', timeout: 10_000 });
  assert.equal((await targets())['h2'].inRotation, true, 'Escape changed nothing');

  await drain.click();
  await dialog.waitFor({ state: 'visible', timeout: 10_000 });
  await Promise.all([page.waitForNavigation({ timeout: 20_000 }), dialog.getByRole('button', { name: 'Confirm' }).click()]);
  assert.match(await page.locator('.flash[role="alert"]').innerText(), /h2 drained at the front of shop/);
  // The daemon: out of rotation, drained by the operator (as `baton status` shows it), and no new request goes there.
  const h2 = (await targets())['h2'];
  assert.equal(h2.state, 'drain');
  assert.equal(h2.inRotation, false);
  assert.match(h2.operator?.reason ?? '', /from the dashboard/);
  const status = await front.cli(['status', 'shop'], 10_000);
  assert.match(status.stdout, /^\s+h2\s+\S+\s+drain\s/m, `baton status shows h2 drained:\n${status.stdout}`);
  assert.match(status.stdout, /h2: drained here by the operator: from the dashboard/);
  await waitUntil('h2 to finish what it had in flight', async () => (await targets())['h2'].inflight === 0, 10_000, 100);
  const sentToH2 = (await targets())['h2'].requests;
  const h1Before = (await targets())['h1'].requests;
  await waitUntil('h1 to take 100 more requests', async () => (await targets())['h1'].requests >= h1Before + 100, 20_000, 100);
  assert.equal((await targets())['h2'].requests, sentToH2, 'a drained target gets no new request');
  await page.locator('#targets tr[data-target="h2"][data-state="drain"]').waitFor({ timeout: 10_000 });
  assert.match(await page.locator('#targets tr[data-target="h2"]').innerText(), /out drained here by the operator: from the dashboard/);
  await waitUntil('the page to show no traffic on h2', async () => ((await shownRates(page))['h2'] ?? 0) === 0, 15_000, 200);
  // The picture for the docs: h2 drained, its line down to 0 on the charts, h1 taking it all.
  // Tall enough for the first row of charts.
  await page.setViewportSize({ width: 1280, height: 1040 });
  await page.evaluate('window.scrollTo(0, 0)');
  await page.screenshot({ path: path.join(shots.dir, 'front.png') });
  await page.setViewportSize({ width: 1280, height: 860 });
  await assertAccessible(page, 'the front service\'s page with a target drained');

  await page.getByRole('button', { name: 'Undrain h2', exact: true }).click();
  await dialog.waitFor({ state: 'visible', timeout: 10_000 });
  await Promise.all([page.waitForNavigation({ timeout: 20_000 }), dialog.getByRole('button', { name: 'Confirm' }).click()]);
  assert.match(await page.locator('.flash[role="alert"]').innerText(), /h2 is back in rotation at the front of shop/);
  const back = (await targets())['h2'];
  assert.equal(back.inRotation, true);
  assert.equal(back.operator, null);
  await waitUntil('h2 to take requests again', async () => (await targets())['h2'].requests > sentToH2 + 20, 20_000, 100);
  await waitUntil('the page to show traffic on h2 again', async () => ((await shownRates(page))['h2'] ?? 0) > 0, 15_000, 200);

  const result = await load!.stop();
  load = null;
  assert.equal(result.failed, 0, `failed requests through the front: ${result.errors.join('; ')}`);
  for (const h of HOSTS) assert.ok((result.bodies[`${h.name}-v1`] ?? 0) > 0, `${h.name} answered: ${JSON.stringify(result.bodies)}`);

  // Both actions in the audit log: the dashboard's door, the session's id, the path and the answer.
  const text = await auditLog((t) => t.includes('/targets/h2/undrain'), 'the audit log to record the drain and the undrain');
  const lines = text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const verb of ['drain', 'undrain']) {
    const l = lines.find((x) => x['path'] === `/services/shop/targets/h2/${verb}` && x['status'] === 303);
    assert.ok(l, `an audit line for the ${verb}: ${text}`);
    assert.equal(l['via'], 'dashboard');
    assert.match(String(l['actor']), /^dashboard session /);
  }
});

test('a target action without the CSRF token or the session is refused; without confirmation it only asks', async () => {
  const cookie = (await context.cookies()).filter((c) => c.name.startsWith('baton_dash_')).map((c) => `${c.name}=${c.value}`).join('; ');
  await openService('shop');
  const csrf = await page.locator('form[action="/logout"] input[name="_csrf"]').getAttribute('value');
  assert.ok(csrf);
  const post = (headers: Record<string, string>, body: string, target = 'h1'): Promise<Response> =>
    fetch(`${base}/services/shop/targets/${target}/drain`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: base, ...headers }, body });
  assert.equal((await post({}, `_csrf=${csrf}&confirmed=1`)).status, 403, 'no session');
  assert.equal((await post({ cookie }, 'confirmed=1')).status, 403, 'no CSRF token');
  assert.equal((await post({ cookie, origin: 'http://evil.example' }, `_csrf=${csrf}&confirmed=1`)).status, 403, 'another Origin');
  // Without JavaScript: the confirmation page, which posts to the same action.
  const ask = await post({ cookie }, `_csrf=${csrf}`);
  assert.equal(ask.status, 200);
  const body = await ask.text();
  assert.match(body, /Drain h1 at the front of shop/);
  assert.match(body, /action="\/services\/shop\/targets\/h1\/drain"/);
  // A target the service does not have: 404 with the known ones named.
  const unknown = await post({ cookie }, `_csrf=${csrf}&confirmed=1`, 'h9');
  assert.equal(unknown.status, 404);
  assert.match(await unknown.text(), /no target &quot;h9&quot; \(targets: h1, h2\)/);
  assert.ok(Object.values(await targets()).every((t) => t.inRotation && t.operator === null), 'nothing changed');
  const text = await auditLog((t) => t.includes('missing or wrong'), 'the audit log to record the refusals');
  assert.match(text, /"path":"\/services\/shop\/targets\/h1\/drain","status":403,"refused":"Not signed in/);
  assert.deepEqual(foreign, [], 'the pages asked for nothing but the dashboard');
});

/** Open a service's page and wait for its live stream. */
async function openService(name: string): Promise<void> {
  await page.goto(`${base}/services/${name}`);
  await page.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });
}
