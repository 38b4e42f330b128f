// The CLI as a user meets it, run as a real process: per-verb checking and
// help, exit statuses, where it finds the config, `baton check`, shell
// completion, and pipes closed early.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createDaemon, freePort, waitUntil } from '../helpers/daemon.ts';
import { locateConfig } from '../../src/cli/config-file.ts';
import { BatonError } from '../../src/core/errors.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const BATON = path.join(ROOT, 'bin/baton.js');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI with exactly these arguments, environment additions and working directory. */
function baton(args: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): Run {
  const env: NodeJS.ProcessEnv = { ...process.env, BATON_CONFIG: undefined, BATON_SOCKET: undefined, ...opts.env };
  const r = spawnSync(process.execPath, [BATON, ...args], { cwd: opts.cwd ?? os.tmpdir(), env, encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const tmp = await mkdtemp(path.join(os.tmpdir(), 'baton-cli-'));
after(() => rm(tmp, { recursive: true, force: true }));

const VALID = ['listen: ["127.0.0.1:18080"]', 'state_dir: ./state', 'services:', '  web:', '    command: exec node server.mjs', ''].join('\n');

test('each verb takes only its own flags; usage errors exit 2 and say what is wrong', () => {
  const full = baton(['status', '--full']);
  assert.equal(full.code, 2);
  assert.equal(full.stderr, 'baton: status does not take --full; it takes --json, --config, --socket (see `baton status --help`)\n');
  assert.equal(full.stdout, '');
  const typo = baton(['stauts']);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /unknown command "stauts"; did you mean "status"\?/);
  const missing = baton(['rollback']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /rollback needs SERVICE/);
});

test('`baton deploy --help` and `baton help deploy` print that verb\'s help and exit 0', () => {
  const a = baton(['deploy', '--help']);
  const b = baton(['help', 'deploy']);
  assert.equal(a.code, 0);
  assert.equal(b.code, 0);
  assert.equal(a.stdout, b.stdout);
  assert.match(a.stdout, /^usage: baton deploy SERVICE \[DIR\] \[--ref REF\]/);
  assert.match(a.stdout, /--strategy STRATEGY/);
  const all = baton(['help']);
  assert.equal(all.code, 0);
  assert.match(all.stdout, /^ {2}deploy {2,}/m);
  assert.equal(baton([]).code, 2, '`baton` alone is a usage error');
});

test('the config is found by --config, then $BATON_CONFIG, then ./baton.yaml; the "not running" hint names it', async () => {
  const here = path.join(tmp, 'here');
  const there = path.join(tmp, 'there');
  await mkdir(here, { recursive: true });
  await mkdir(there, { recursive: true });
  await writeFile(path.join(here, 'baton.yaml'), VALID);
  await writeFile(path.join(there, 'other.yaml'), VALID.replace('./state', './other-state'));

  const local = baton(['status'], { cwd: here });
  assert.equal(local.code, 3, local.stderr);
  assert.match(local.stderr, new RegExp(`cannot reach the baton daemon at ${path.join(here, 'state/baton.sock')} \\(ENOENT\\); the daemon of ${path.join(here, 'baton.yaml')} \\(found by ./baton.yaml\\) is not running: start it with \`baton daemon --config ${path.join(here, 'baton.yaml')}\``));

  const fromEnv = baton(['status'], { cwd: here, env: { BATON_CONFIG: path.join(there, 'other.yaml') } });
  assert.equal(fromEnv.code, 3);
  assert.match(fromEnv.stderr, /other-state\/baton\.sock.*found by \$BATON_CONFIG/);

  // A relative $BATON_CONFIG or --config is taken from the caller's working directory.
  const relEnv = baton(['status'], { cwd: there, env: { BATON_CONFIG: 'other.yaml' } });
  assert.match(relEnv.stderr, new RegExp(`the daemon of ${path.join(there, 'other.yaml')} \\(found by \\$BATON_CONFIG\\)`));
  const flag = baton(['status', '--config', '../here/baton.yaml'], { cwd: there, env: { BATON_CONFIG: 'other.yaml' } });
  assert.match(flag.stderr, new RegExp(`the daemon of ${path.join(here, 'baton.yaml')} \\(found by --config\\)`));

  const nowhere = baton(['status'], { cwd: there });
  assert.equal(nowhere.code, 2);
  assert.match(nowhere.stderr, /no config file: no --config, no \$BATON_CONFIG, no baton\.yaml in .*there and no \/etc\/baton\/baton\.yaml/);
  const named = baton(['status'], { cwd: there, env: { BATON_CONFIG: 'nope.yaml' } });
  assert.equal(named.code, 2);
  assert.match(named.stderr, /config file nope\.yaml \(from \$BATON_CONFIG\) not found/);
});

test('a socket that answers something other than baton\'s JSON gets a clear message, not a stack trace', async (t) => {
  const socket = path.join(tmp, 'not-baton.sock');
  const server = http.createServer((_req, res) => res.end('hello, I am not baton'));
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const r = await new Promise<Run>((resolve, reject) => {
    // Asynchronous: the server runs in this process.
    const c = spawn(process.execPath, [BATON, 'status', '--socket', socket], { cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'baton: the daemon\'s answer to /status is not JSON: "hello, I am not baton"\n');
});

test('/etc/baton/baton.yaml is the last place looked at', async () => {
  const system = path.join(tmp, 'etc-baton.yaml');
  await writeFile(system, VALID);
  const empty = path.join(tmp, 'empty');
  await mkdir(empty, { recursive: true });
  assert.deepEqual(locateConfig(undefined, {}, empty, system), { file: system, via: system });
  await writeFile(path.join(empty, 'baton.yaml'), VALID);
  assert.equal(locateConfig(undefined, {}, empty, system).via, './baton.yaml');
  assert.equal(locateConfig(undefined, { BATON_CONFIG: system }, empty, '/nonexistent').via, '$BATON_CONFIG');
  await rm(system);
  await rm(path.join(empty, 'baton.yaml'));
  assert.throws(() => locateConfig(undefined, {}, empty, system), (e) => e instanceof BatonError && e.code === 'USAGE');
});

test('`baton check` validates without starting anything: exit 0, or 1 with line-numbered errors', async () => {
  const dir = path.join(tmp, 'check');
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'baton.yaml'), VALID);
  const ok = baton(['check'], { cwd: dir });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, 'baton.yaml: ok (1 service: web)\n');
  const json = baton(['check', '--json', '--config', path.join(dir, 'baton.yaml')]);
  assert.deepEqual(JSON.parse(json.stdout), { config: path.join(dir, 'baton.yaml'), via: '--config', ok: true, services: ['web'] });

  await writeFile(path.join(dir, 'bad.yaml'), ['services:', '  web:', '    command: "unterminated', '  api: x', ''].join('\n'));
  const bad = baton(['check', '--config', 'bad.yaml'], { cwd: dir });
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, 'baton: bad.yaml: 1 problem\n  bad.yaml:3:14: invalid YAML: the double quote opened here is never closed\n');
  await writeFile(path.join(dir, 'keys.yaml'), ['services:', '  web:', '    comand: x', ''].join('\n'));
  const keys = baton(['check', '--config', 'keys.yaml'], { cwd: dir });
  assert.equal(keys.code, 1);
  assert.match(keys.stderr, /keys\.yaml:3:5: services\.web\.comand: unknown key \(did you mean "command"\?\)/);
  assert.equal(existsSync(path.join(dir, 'state')), false, 'check created the state directory');
});

/** A directory with a config of two services and another of one; a PATH on which `baton` is this baton (completion runs `baton check --json`). */
async function serviceCompletionSetup(): Promise<{ dir: string; env: NodeJS.ProcessEnv }> {
  const dir = path.join(tmp, 'services');
  const bin = path.join(tmp, 'bin');
  await mkdir(dir, { recursive: true });
  await mkdir(bin, { recursive: true });
  await writeFile(path.join(dir, 'baton.yaml'), 'services:\n  web: { command: x }\n  api: { command: y }\n');
  await writeFile(path.join(dir, 'other.yaml'), 'services:\n  other: { command: x }\n');
  await writeFile(path.join(bin, 'baton'), `#!/bin/sh\nexec '${process.execPath}' '${BATON}' "$@"\n`, { mode: 0o755 });
  return { dir, env: { ...process.env, PATH: `${bin}:${process.env['PATH'] ?? ''}`, HOME: tmp, BATON_CONFIG: undefined } };
}

test('bash completion from the verb table: verbs, flags, flag values, arguments, the config\'s services', async () => {
  const services = await serviceCompletionSetup();
  const script = baton(['completion', 'bash']);
  assert.equal(script.code, 0);
  const complete = (line: string, cwd = ROOT): string => {
    const words = line.split(' ');
    const r = spawnSync('bash', ['--norc', '-c', `${script.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _baton; echo "\${COMPREPLY[*]}"`], { encoding: 'utf8', cwd, env: services.env });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim();
  };
  assert.equal(complete('baton sta'), 'status');
  assert.equal(complete('baton re'), 'restart resume releases reload');
  assert.equal(complete('baton status --'), '--json --config --socket --help');
  assert.equal(complete('baton deploy web --strategy '), 'blue_green canary');
  assert.equal(complete('baton --config x.yaml maintenance web o'), 'on off');
  assert.equal(complete('baton completion '), 'bash zsh');
  assert.equal(complete('baton deploy web bi'), 'bin');
  assert.doesNotMatch(complete('baton '), /deploy-push/);
  assert.equal(complete('baton deploy ', services.dir), 'web api');
  assert.equal(complete('baton rollback w', services.dir), 'web');
  assert.equal(complete('baton --config other.yaml status ', services.dir), 'other');
});

test('zsh completion from the verb table: what a real zsh offers after a Tab', async () => {
  const services = await serviceCompletionSetup();
  const script = baton(['completion', 'zsh']);
  assert.equal(script.code, 0);
  const fpath = path.join(tmp, 'zfunc');
  spawnSync('mkdir', ['-p', fpath]);
  spawnSync('sh', ['-c', `cat > '${path.join(fpath, '_baton')}'`], { input: script.stdout });
  const syntax = spawnSync('zsh', ['-n', path.join(fpath, '_baton')], { encoding: 'utf8' });
  assert.equal(syntax.status, 0, syntax.stderr);
  const complete = (line: string, cwd = ROOT): string => {
    const r = spawnSync('zsh', ['-f', path.join(ROOT, 'test/fixtures/zsh-complete.zsh'), fpath, line], { encoding: 'utf8', timeout: 30_000, cwd, env: services.env });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l !== '').sort().join(' ');
  };
  assert.equal(complete('baton sta'), 'status');
  assert.equal(complete('baton re'), 'releases reload restart resume');
  assert.equal(complete('baton deploy web --strategy '), 'blue_green canary');
  assert.equal(complete('baton -c x.yaml maintenance web '), 'off on');
  assert.equal(complete('baton deploy ', services.dir), 'api web');
  assert.equal(complete('baton -c other.yaml status ', services.dir), 'other');
  assert.equal(complete('baton logs web -'), '--config --follow --help --json --lines --socket -c -f -h -n');
});

/** Run the CLI with its stdout a pipe whose reading end is closed before it writes anything. */
function withClosedStdout(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BATON, ...args], { cwd: tmp, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    c.stdout.destroy();
    let stderr = '';
    c.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      c.kill('SIGKILL');
      reject(new Error(`baton ${args.join(' ')} did not end with its stdout closed`));
    }, 30_000);
    c.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout: '', stderr });
    });
  });
}

test('with a daemon: release paths are the caller\'s; output into a pipe closed early (`| head`) ends quietly, no EPIPE stack trace', async (t) => {
  const d = await createDaemon();
  t.after(() => d.cleanup());
  const caller = path.join(d.dir, 'elsewhere');
  await mkdir(caller);
  const rel = path.relative(caller, await d.release('v1'));
  assert.ok(!path.isAbsolute(rel) && rel.startsWith('..'));
  const dep = baton(['deploy', 'web', rel], { cwd: caller, env: { BATON_CONFIG: d.configFile } });
  assert.equal(dep.code, 0, dep.stdout + dep.stderr);
  const releases = JSON.parse((await d.cli(['releases', 'web', '--json'])).stdout) as { sourcePath: string; current: boolean }[];
  assert.equal(releases.find((r) => r.current)?.sourcePath, path.resolve(caller, rel));

  // Output that goes on after the reader left: each line of a deploy's progress.
  const closed = await withClosedStdout(['deploy', 'web', await d.release('v1b'), '--config', d.configFile]);
  assert.deepEqual([closed.code, closed.stderr], [0, '']);
  await waitUntil('the deploy the CLI left to finish', async () => (await d.status('web')).services[0].deploying === null, 60_000);
  const status = await withClosedStdout(['status', '--config', d.configFile]);
  assert.deepEqual([status.code, status.stderr], [0, '']);

  // A real pipeline: the deploy prints its steps over seconds, head leaves after the first.
  const v2 = await d.release('v2');
  const sh = spawnSync('bash', ['-c', `set -o pipefail; '${process.execPath}' '${BATON}' deploy web '${v2}' --config '${d.configFile}' 2>'${path.join(d.dir, 'deploy.err')}' | head -1`], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(sh.status, 0, sh.stderr);
  assert.equal(sh.stdout.split('\n').length, 2, sh.stdout);
  const err = spawnSync('cat', [path.join(d.dir, 'deploy.err')], { encoding: 'utf8' }).stdout;
  assert.equal(err, '');
});

test('`baton --config FILE daemon` (flags before the verb) runs the daemon as `baton daemon` does, small semi-space included', async (t) => {
  // Started by hand, as an operator would: the daemon binds a port of its own (the harness holds its ports for start() only).
  const d = await createDaemon({ start: false, port: await freePort() });
  t.after(() => d.cleanup());
  const proc = spawn(process.execPath, [BATON, '--config', d.configFile, 'daemon'], { cwd: d.dir, stdio: 'ignore' });
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  await waitUntil('the daemon to answer', () => baton(['status', '--config', d.configFile]).code === 0, 20_000);
  const cmdline = spawnSync('cat', [`/proc/${proc.pid}/cmdline`], { encoding: 'utf8' }).stdout.split('\0');
  assert.ok(cmdline.includes('--max-semi-space-size=4'), cmdline.join(' '));
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  assert.equal(baton(['shutdown', '--config', d.configFile]).code, 0);
  await exited;
});
