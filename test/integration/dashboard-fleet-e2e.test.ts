// `baton fleet dashboard` end to end: real hosts (each its own sshd with a
// verified host key, its own baton daemon, its own loopback address), the
// operator's CLI serving the fleet page from the operator's machine, and
// Debian's Chromium reading it. The table shows every host with its release,
// standby, health, balancer state, baton version and last rollout, and
// changes on the open page (no reload) when a host is drained, when a rollout
// switches the canary host and pauses, when it resumes, and when a host's
// daemon goes away and comes back. One ssh connection per host serves every
// refresh; Ctrl-C (SIGTERM) ends the command and its ssh connections.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { BATON, createFleet, fleetServiceYaml, type FleetHost, type TestFleet } from '../helpers/fleet-hosts.ts';
import { fleetYaml } from '../helpers/fleet-file.ts';
import { waitUntil } from '../helpers/daemon.ts';
import { screenshotDir } from '../helpers/screenshots.ts';
import { settlesWithin } from '../helpers/timeouts.ts';
import { assertAccessible } from '../helpers/accessibility.ts';

const CHROMIUM = '/usr/bin/chromium';
const shots = screenshotDir();
let f: TestFleet;
let browser: Browser;
let page: Page;
let dash: { proc: ChildProcess; stdout: () => string; stderr: () => string; exited: Promise<number | null> } | null = null;

function startDashboard(): NonNullable<typeof dash> {
  // Its own process group, as a terminal would run it; the operator's environment of the other fleet commands.
  const proc = spawn(process.execPath, [BATON, 'fleet', 'dashboard', '--fleet', f.fleetFile, '--json', '--every', '500ms'], {
    cwd: path.dirname(f.fleetFile),
    env: { ...process.env, XDG_STATE_HOME: f.stateHome, BATON_SSH_CONTROL_DIR: f.controlDir },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d) => (stdout += d));
  proc.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, stdout: () => stdout, stderr: () => stderr, exited };
}

async function stopDashboard(): Promise<number | null> {
  const d = dash;
  dash = null;
  if (!d || d.proc.exitCode !== null) return d?.proc.exitCode ?? null;
  d.proc.kill('SIGTERM');
  if (!(await settlesWithin(d.exited, 15_000))) {
    try {
      process.kill(-d.proc.pid!, 'SIGKILL');
    } catch {
      // gone
    }
    throw new Error(`baton fleet dashboard did not stop within 15 s after SIGTERM:\n${d.stderr()}`);
  }
  return d.exited;
}

/** A cell of the table, as the page shows it now. */
function cell(host: string, k: string, service = 'web'): Promise<string> {
  return page.locator(`#fleet-hosts tr[data-host="${host}"][data-service="${service}"] [data-k="${k}"]`).innerText({ timeout: 10_000 });
}

async function shows(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  await waitUntil(`the fleet page to show ${what}`, () => check().catch(() => false), timeoutMs, 100);
}

const short = (release: string): string => release.replace(/^(v\d+)-.*$/, '$1');


before(async () => {
  f = await createFleet({ hosts: 2, services: () => fleetServiceYaml() });
  // The readiness balancer: a drain is the host's own state (503 on /_baton/health), no HAProxy needed to see it.
  await f.writeFleetFile(fleetYaml(f, { balancer: 'readiness', rollout: 'batch: 1\ncanary: 1\nbake: 2s' }));
  const r = await f.fleet(['deploy', 'web', await f.release('v1'), '--bake', '0s', '--batch', '2']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60_000,
  });
  page = await (await browser.newContext({ viewport: { width: 1280, height: 760 } })).newPage();
});

after(async () => {
  await stopDashboard().catch(() => {});
  await browser?.close().catch(() => {});
  await f?.cleanup();
  shots.done();
});

test('every host in one table: release, standby, health, balancer, baton version, last rollout; one ssh connection per host', async () => {
  const sshBefore = await Promise.all(f.hosts.map((h) => h.sshConnections()));
  dash = startDashboard();
  const d = dash;
  await waitUntil('baton fleet dashboard to print its link', () => {
    if (d.proc.exitCode !== null) throw new Error(`baton fleet dashboard exited ${d.proc.exitCode}:\n${d.stdout()}\n${d.stderr()}`);
    return d.stdout().includes('\n');
  }, 30_000, 50);
  const { url } = JSON.parse(d.stdout().split('\n')[0]!) as { url: string };
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/login\?token=/);
  assert.equal((await page.goto(url))?.status(), 200);
  await page.getByRole('heading', { name: 'Fleet test' }).waitFor();
  await page.locator('#live-state', { hasText: 'live' }).waitFor({ timeout: 10_000 });

  const version = (await f.hosts[0]!.status()).daemon.version as string;
  for (const h of f.hosts) {
    assert.equal(short(await cell(h.name, 'current')), 'v1');
    assert.match(await cell(h.name, 'health'), /1\/1 healthy/);
    assert.match(await cell(h.name, 'drain'), /^ready/);
    assert.equal(await cell(h.name, 'version'), version);
    assert.match(await cell(h.name, 'rollout'), /^done v1-\S+ \(v1-\S+, done/);
    assert.equal(await page.locator(`#fleet-hosts tr[data-host="${h.name}"] th`).innerText(), h.name, 'the host (its ssh destination is its name here)');
  }
  assert.match(await page.locator('#fleet-rollouts').innerText(), /web ← v1-\S+ · done/);
  await assertAccessible(page, 'the fleet page');
  const fcp = await page.evaluate<number | null>(`performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null`);
  console.log(`fleet dashboard: first contentful paint ${fcp?.toFixed(0)} ms (first visit, through the login redirect)`);

  // Several refresh rounds: each host is asked over the one connection opened for it.
  const seen = new Set<string>();
  await shows('five refresh rounds', async () => {
    seen.add((await page.locator('#fleet-refreshed time').getAttribute('datetime')) ?? '');
    return seen.size >= 5;
  });
  const sshAfter = await Promise.all(f.hosts.map((h) => h.sshConnections()));
  assert.deepEqual(sshAfter.map((n, i) => n - sshBefore[i]!), f.hosts.map(() => 1), 'one ssh connection per host for every round');
});

test('a drained host changes on the open page; undrained, it is back', async () => {
  const r = await f.fleet(['drain', 'h1', '--reason', 'kernel upgrade']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  await shows('h1 drained', async () => /^drain since .*\(kernel upgrade\)/.test(await cell('h1', 'drain')));
  assert.match(await cell('h2', 'drain'), /^ready/);
  const u = await f.fleet(['undrain', 'h1', '--weight', '25%']);
  assert.equal(u.code, 0, `${u.stdout}\n${u.stderr}`);
  await shows('h1 back in rotation at 25%', async () => (await cell('h1', 'drain')).startsWith('ready at 25%'));
  assert.equal((await f.fleet(['undrain', 'h1'])).code, 0);
  await shows('h1 ready at full weight', async () => (await cell('h1', 'drain')) === 'ready');
});

test('a rollout switches the canary host and pauses: the table shows it; resumed, every host is on the new release', async () => {
  const run = f.spawnFleet(['deploy', 'web', await f.release('v2')]);
  await waitUntil('the canary host to bake', () => {
    if (run.proc.exitCode !== null) throw new Error(`the rollout ended early:\n${run.stdout()}`);
    return /h1 +baking/.test(run.stdout());
  }, 60_000, 50);
  run.proc.kill('SIGINT');
  const paused = await run.done;
  assert.equal(paused.code, 130, `${paused.stdout}\n${paused.stderr}`);
  await shows('h1 on v2, h2 still on v1, the rollout paused', async () =>
    short(await cell('h1', 'current')) === 'v2' && short(await cell('h2', 'current')) === 'v1' && /· paused/.test(await page.locator('#fleet-rollouts').innerText()));
  assert.equal(short(await cell('h1', 'standby')), 'v1');
  assert.match(await cell('h1', 'rollout'), /^done v2-\S+ \(v2-\S+, paused/);
  assert.match(await cell('h2', 'rollout'), /^shipped/);
  // The top of the page, down to the end of its content.
  await page.evaluate('window.scrollTo(0, 0)');
  const bottom = await page.evaluate<number>(`Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)`);
  const { width, height } = page.viewportSize()!;
  await page.screenshot({ path: path.join(shots.dir, 'fleet.png'), clip: { x: 0, y: 0, width, height: Math.min(height, bottom + 8) } });

  const r = await f.fleet(['resume', 'web']);
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  await shows('both hosts on v2, the rollout done', async () =>
    short(await cell('h1', 'current')) === 'v2' && short(await cell('h2', 'current')) === 'v2' && /web ← v2-\S+ · done/.test(await page.locator('#fleet-rollouts').innerText()));
  for (const h of f.hosts) assert.equal(short(await cell(h.name, 'standby')), 'v1');
  assert.match(await cell('h2', 'rollout'), /^done v2/);
});

test('a host whose daemon goes away shows unreachable, and comes back when it returns; SIGTERM ends the command and its ssh connections', async () => {
  const h2 = f.hosts[1] as FleetHost;
  await h2.killDaemon();
  await shows('h2 unreachable', async () => /unreachable: .*h2/.test(await page.locator('#fleet-hosts tr[data-host="h2"] [data-k="error"]').innerText()));
  assert.match(await page.locator('#fleet-refreshed').innerText(), /1 unreachable/);
  assert.equal(short(await cell('h1', 'current')), 'v2', 'the other host is still shown');
  await h2.startDaemon();
  await shows('h2 back', async () => short(await cell('h2', 'current')) === 'v2');

  const code = await stopDashboard();
  assert.equal(code, 0);
  // Its ssh masters ended with it: no control socket is left in the operator's control directory.
  const left = readdirSync(f.controlDir, { recursive: true, withFileTypes: true }).filter((e) => !e.isDirectory()).map((e) => e.name);
  assert.deepEqual(left, [], `ssh control sockets left behind: ${left.join(', ')}`);
});

test('bad input is refused with a clear message before anything starts', async () => {
  const run = (args: string[]): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const c = spawn(process.execPath, [BATON, 'fleet', 'dashboard', '--fleet', f.fleetFile, ...args], { env: { ...process.env, XDG_STATE_HOME: f.stateHome, BATON_SSH_CONTROL_DIR: f.controlDir }, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      c.stderr!.on('data', (b) => (stderr += b));
      // It must end by itself; if not, it is killed and the exit status says so.
      const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
      c.once('exit', (code) => {
        clearTimeout(t);
        resolve({ code, stderr });
      });
    });
  const open = await run(['--listen', '0.0.0.0:9191']);
  assert.equal(open.code, 2);
  assert.match(open.stderr, /--listen must be a loopback address and port such as 127\.0\.0\.1:9191 .*got "0\.0\.0\.0:9191"/);
  const fast = await run(['--every', '10ms']);
  assert.equal(fast.code, 2);
  assert.match(fast.stderr, /--every must be a duration from 500ms/);
  const missing = await run(['--fleet', path.join(f.dir, 'no-such-fleet.yaml')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no-such-fleet\.yaml: cannot read the fleet file/);
});
