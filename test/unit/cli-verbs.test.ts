// The table of verbs and the parser built on it: each verb takes only its own
// flags and arguments, help per verb, "did you mean" for a mistyped verb.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatonError } from '../../src/core/errors.ts';
import { parseCommandLine, verbHelp, overview } from '../../src/cli/parse.ts';
import { VERBS } from '../../src/cli/verbs.ts';
import type { VerbSpec } from '../../src/cli/verb.ts';

function usageError(argv: string[], verbs: readonly VerbSpec[] = VERBS): string {
  try {
    parseCommandLine(argv, verbs);
  } catch (err) {
    assert.ok(err instanceof BatonError, `not a BatonError: ${String(err)}`);
    assert.equal(err.code, 'USAGE');
    return err.message;
  }
  assert.fail(`baton ${argv.join(' ')} was accepted`);
}

test('a flag of another verb is refused, naming the flag, the verb and what it takes', () => {
  assert.equal(usageError(['status', '--full']), 'status does not take --full; it takes --json, --config, --socket (see `baton status --help`)');
  assert.match(usageError(['restart', 'web', '--to', 'x']), /^restart does not take --to;/);
  assert.match(usageError(['deploy', 'web', '--stratgy', 'canary']), /deploy does not take --stratgy; did you mean "--strategy"\?/);
  assert.match(usageError(['logs', 'web', '-x']), /logs does not take -x/);
});

test('arguments are counted and checked per verb', () => {
  assert.match(usageError(['deploy']), /^deploy needs SERVICE: baton deploy SERVICE \[DIR\]/);
  assert.match(usageError(['status', 'a', 'b']), /status takes at most 1 argument .*unexpected "b"/);
  assert.match(usageError(['reload', 'now']), /reload takes no arguments; unexpected "now"/);
  assert.match(usageError(['maintenance', 'web', 'maybe']), /maintenance: MODE must be on or off; got "maybe"/);
  assert.match(usageError(['deploy', 'web', '--strategy', 'yolo']), /--strategy must be one of blue_green, canary; got "yolo"/);
  assert.match(usageError(['logs', 'web', '--lines']), /--lines needs a value/);
  assert.match(usageError(['deploy', 'web', '--ref', '--json']), /--ref needs a value, got the flag --json/);
  const dashed = parseCommandLine(['maintenance', 'web', 'on', '--message=-- back soon'], VERBS);
  assert.ok(dashed.kind === 'run' && dashed.flags['message'] === '-- back soon');
  assert.match(usageError(['status', '--json=yes']), /--json takes no value/);
});

test('a good command line gives the verb, its arguments and flags (before or after the verb)', () => {
  const p = parseCommandLine(['--config', 'x.yaml', 'deploy', 'web', 'dir', '--strategy', 'canary', '--json'], VERBS);
  assert.equal(p.kind, 'run');
  if (p.kind !== 'run') return;
  assert.equal(p.verb.name, 'deploy');
  assert.deepEqual(p.args, ['web', 'dir']);
  assert.deepEqual(p.flags, { config: 'x.yaml', strategy: 'canary', json: true });
  const l = parseCommandLine(['logs', 'web', '-n', '5', '-f'], VERBS);
  assert.ok(l.kind === 'run' && l.flags['lines'] === '5' && l.flags['follow'] === true);
});

test('help per verb: `baton deploy --help`, `baton deploy -h` and `baton help deploy` are the same', () => {
  const deploy = VERBS.find((v) => v.name === 'deploy')!;
  for (const argv of [['deploy', '--help'], ['deploy', '-h'], ['help', 'deploy'], ['deploy', 'web', '--help']]) {
    const p = parseCommandLine(argv, VERBS);
    assert.ok(p.kind === 'help' && p.verb === deploy, argv.join(' '));
  }
  const text = verbHelp(deploy);
  assert.match(text, /^usage: baton deploy SERVICE \[DIR\] \[--ref REF\] \[--strategy STRATEGY\]/);
  assert.match(text, /--strategy STRATEGY +override the service's configured strategy \(blue_green \| canary\)/);
  assert.doesNotMatch(text, /--full/);
  const all = overview(VERBS);
  for (const v of VERBS) assert.equal(all.includes(`  ${v.name} `), !v.hidden, v.name);
});

test('an unknown verb gets a "did you mean"', () => {
  assert.match(usageError(['stauts']), /^unknown command "stauts"; did you mean "status"\?/);
  assert.match(usageError(['rollbak', 'web']), /did you mean "rollback"\?/);
  assert.match(usageError(['promo']), /did you mean "promote"\?/);
  assert.equal(usageError(['frobnicate']), 'unknown command "frobnicate" (see `baton help`)');
  assert.match(usageError(['help', 'deplyo']), /did you mean "deploy"\?/);
});

test('two-word verbs: a group lists its verbs, a mistyped one gets a suggestion', async () => {
  const load = (): Promise<() => Promise<number>> => Promise.resolve(() => Promise.resolve(0));
  const verbs: VerbSpec[] = [
    { name: 'fleet deploy', summary: 'deploy to every host', args: [{ name: 'SERVICE' }], flags: { hosts: { type: 'string', help: 'h' } }, load },
    { name: 'fleet status', summary: 'every host', args: [], flags: {}, load },
  ];
  const p = parseCommandLine(['fleet', 'deploy', 'web', '--hosts', 'a,b'], verbs);
  assert.ok(p.kind === 'run' && p.verb.name === 'fleet deploy' && p.args[0] === 'web' && p.flags['hosts'] === 'a,b');
  const g = parseCommandLine(['fleet'], verbs);
  assert.ok(g.kind === 'help' && g.group === 'fleet');
  assert.match(overview(verbs, 'fleet'), /usage: baton fleet COMMAND[\s\S]*fleet deploy +deploy to every host/);
  assert.match(usageError(['fleet', 'statsu'], verbs), /unknown command "fleet statsu"; did you mean "fleet status"\?/);
  assert.ok(parseCommandLine(['help', 'fleet', 'status'], verbs).kind === 'help');
});

test('every verb of the table loads its command', async () => {
  const names = new Set<string>();
  for (const v of VERBS) {
    assert.ok(!names.has(v.name), `${v.name} is in the table twice`);
    names.add(v.name);
    assert.equal(typeof (await v.load()), 'function', v.name);
    for (const [name, f] of Object.entries(v.flags)) {
      assert.match(name, /^[a-z][a-z0-9-]*$/, `${v.name} --${name}`);
      assert.ok(f.help.length > 0, `${v.name} --${name} has no help`);
    }
  }
});
