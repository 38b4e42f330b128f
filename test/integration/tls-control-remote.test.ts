// The control plane closed by default: without `control.remote` there is no TCP
// control port; with it, TLS only and a bearer token (refused requests reach
// nothing and are audited); every control action is in the audit log.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createDaemon, freePort, serviceYaml, type TestDaemon } from '../helpers/daemon.ts';
import { makeCa, type TestCa } from '../fixtures/tls-certs.ts';

const TOKEN = 'a'.repeat(16) + '0123456789abcdef0123456789abcdef';
let d: TestDaemon;
let ca: TestCa;
let port: number;
const cleanups: Array<() => void> = [];

before(async () => {
  ca = makeCa({ after: (fn) => cleanups.push(fn) });
  const leaf = ca.write('control', ['127.0.0.1']);
  const tokenFile = path.join(ca.dir, 'token');
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  d = await createDaemon({ start: false });
  // Held by the harness until the daemon has it.
  const remotePort = await d.holdPort('control-remote');
  await writeFile(d.configFile, [
    `listen: ["127.0.0.1:${d.port}"]`,
    'state_dir: ./state',
    'control:',
    '  remote:',
    `    listen: "127.0.0.1:${remotePort}"`,
    `    cert: ${JSON.stringify(leaf.certFile)}`,
    `    key: ${JSON.stringify(leaf.keyFile)}`,
    `    token_file: ${JSON.stringify(tokenFile)}`,
    'services:',
    serviceYaml(),
    '',
  ].join('\n'));
  await d.start();
  port = remotePort;
});
after(async () => {
  await d?.cleanup();
  for (const c of cleanups) c();
});

function call(method: string, urlPath: string, headers: Record<string, string> = {}, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port, method, path: urlPath, ca: ca.caPem, headers, agent: false }, (res) => {
      let b = '';
      res.on('data', (c: Buffer) => (b += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function auditLines(): Array<Record<string, unknown>> {
  return readFileSync(path.join(d.dir, 'state', 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('the remote control listener answers only over TLS and only with the token', async () => {
  const ok = await call('GET', '/v1/status', { authorization: `Bearer ${TOKEN}` });
  assert.equal(ok.status, 200);
  assert.ok(Array.isArray(JSON.parse(ok.body).services));
  const none = await call('GET', '/v1/status');
  assert.equal(none.status, 401);
  assert.equal(JSON.parse(none.body).error.code, 'CONTROL_UNAUTHORIZED');
  const wrong = await call('POST', '/v1/shutdown', { authorization: `Bearer ${TOKEN.slice(0, -1)}x`, 'content-type': 'application/json' }, '{}');
  assert.equal(wrong.status, 401);
  assert.ok((await d.status()).services.length === 1, 'the refused shutdown reached nothing: the daemon still answers');
  // Plain HTTP on the same port gets no HTTP answer (the TLS handshake fails first).
  const plain = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n'));
    let got = '';
    s.on('data', (b: Buffer) => (got += b.toString('latin1')));
    s.on('close', () => resolve(got));
    s.on('error', () => resolve(got));
  });
  assert.ok(!plain.startsWith('HTTP/1.1 200'), `plain HTTP got: ${plain.slice(0, 80)}`);
});

function remoteCli(args: string[], env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [path.resolve(import.meta.dirname, '../../bin/baton.js'), ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (b: Buffer) => (stdout += b));
    c.stderr!.on('data', (b: Buffer) => (stderr += b));
    const t = setTimeout(() => c.kill('SIGKILL'), 20_000);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

test('the CLI drives a daemon through BATON_REMOTE (HTTPS + token); a wrong token is refused', async () => {
  const tokenFile = path.join(ca.dir, 'cli-token');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  const env = { BATON_REMOTE: `https://127.0.0.1:${port}`, BATON_TOKEN_FILE: tokenFile, BATON_CA_FILE: ca.caFile };
  const ok = await remoteCli(['status', '--json'], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).services[0].name, 'web');
  const badFile = path.join(ca.dir, 'cli-token-bad');
  writeFileSync(badFile, TOKEN.replace(/.$/, 'z'), { mode: 0o600 });
  const bad = await remoteCli(['status'], { ...env, BATON_TOKEN_FILE: badFile });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /CONTROL_UNAUTHORIZED|wrong token/);
  const untrusted = await remoteCli(['status'], { BATON_REMOTE: env.BATON_REMOTE, BATON_TOKEN_FILE: tokenFile });
  assert.notEqual(untrusted.code, 0, 'without the CA the certificate is not trusted');
  assert.ok(!(bad.stderr + untrusted.stderr).includes(TOKEN.slice(16)), 'no token in the CLI messages');
});

test('control actions, local and remote, are in the audit log (0600) without tokens or bodies', async () => {
  const r = await d.cli(['deploy', 'web', await d.release('v1')]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  await call('POST', '/v1/services/web/pause', { authorization: `Bearer ${TOKEN}` });
  await call('POST', '/v1/services/web/resume', { authorization: `Bearer ${TOKEN}` });
  await d.cli(['shutdown']).catch(() => undefined);
  await new Promise<void>((resolve) => (d.proc.exitCode !== null ? resolve() : d.proc.once('exit', () => resolve())));
  const lines = auditLines();
  assert.equal(statSync(path.join(d.dir, 'state', 'audit.log')).mode & 0o777, 0o600);
  const deploy = lines.find((l) => l.path === '/v1/services/web/deploy');
  assert.ok(deploy, JSON.stringify(lines));
  assert.equal(deploy.via, 'unix');
  assert.equal(deploy.status, 200);
  assert.match(String(deploy.actor), /@/);
  const pause = lines.find((l) => l.path === '/v1/services/web/pause');
  assert.equal(pause?.via, 'tcp');
  assert.equal(pause?.peer, '127.0.0.1');
  const refused = lines.filter((l) => l.status === 401);
  assert.deepEqual(refused.map((l) => [l.method, l.path, l.refused]), [['GET', '/v1/status', 'no bearer token'], ['POST', '/v1/shutdown', 'wrong token'], ['GET', '/v1/status', 'wrong token']]);
  assert.ok(lines.some((l) => l.path === '/v1/shutdown' && l.status === 202 && l.via === 'unix'));
  const text = readFileSync(path.join(d.dir, 'state', 'audit.log'), 'utf8');
  assert.ok(!text.includes(TOKEN.slice(16)), 'no token in the audit log');
  assert.ok(!(await d.daemonLog()).includes(TOKEN.slice(16)), 'no token in the daemon log');
});

test('a token file others can read stops the start, naming the file', async () => {
  const other = await createDaemon({ start: false });
  after(() => other.cleanup());
  const leaf = ca.write('control2', ['127.0.0.1']);
  const tokenFile = path.join(ca.dir, 'token-open');
  writeFileSync(tokenFile, TOKEN);
  chmodSync(tokenFile, 0o644);
  // Never bound: the start stops at the token file first.
  const p2 = await freePort();
  await writeFile(other.configFile, [
    `listen: ["127.0.0.1:${other.port}"]`,
    'state_dir: ./state',
    `control: { remote: { listen: "127.0.0.1:${p2}", cert: ${JSON.stringify(leaf.certFile)}, key: ${JSON.stringify(leaf.keyFile)}, token_file: ${JSON.stringify(tokenFile)} } }`,
    'services:',
    serviceYaml(),
    '',
  ].join('\n'));
  await assert.rejects(other.start(), (err: Error) => {
    assert.ok(err.message.includes(tokenFile) && err.message.includes('0644'), err.message);
    return true;
  });
});

test('secrets from the config (service env, the control token) appear in no log, status, history or reload output', async () => {
  const secret = 'S3cr3t-' + 'f00d'.repeat(6);
  const other = await createDaemon({ start: false });
  after(() => other.cleanup());
  const leaf = ca.write('control3', ['127.0.0.1']);
  const tokenFile = path.join(ca.dir, 'token3');
  writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  const p3 = await other.holdPort('control-remote');
  const config = (value: string): string => [
    `listen: ["127.0.0.1:${other.port}"]`,
    'state_dir: ./state',
    'log_level: debug',
    `control: { remote: { listen: "127.0.0.1:${p3}", cert: ${JSON.stringify(leaf.certFile)}, key: ${JSON.stringify(leaf.keyFile)}, token_file: ${JSON.stringify(tokenFile)} } }`,
    'services:',
    serviceYaml({ extra: `env: { DATABASE_PASSWORD: ${JSON.stringify(value)} }` }),
    '',
  ].join('\n');
  await writeFile(other.configFile, config(secret));
  await other.start();
  const outputs: string[] = [];
  const dep = await other.cli(['deploy', 'web', await other.release('v1')]);
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  outputs.push(dep.stdout, dep.stderr);
  for (const args of [['status', '--json'], ['status'], ['history', 'web', '--json'], ['releases', 'web', '--json']]) {
    const r = await other.cli(args);
    outputs.push(r.stdout, r.stderr);
  }
  await writeFile(other.configFile, config(`${secret}-2`));
  const reload = await other.cli(['reload']);
  outputs.push(reload.stdout, reload.stderr);
  assert.match(reload.stdout + reload.stderr, /env/);
  outputs.push(await other.daemonLog());
  const all = outputs.join('\n');
  assert.ok(!all.includes(secret), 'the env value appears somewhere');
  assert.ok(!all.includes(TOKEN), 'the control token appears somewhere');
});
