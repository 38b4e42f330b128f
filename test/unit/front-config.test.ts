// Front services in baton.yaml: a service with `targets` (other hosts' listeners) instead of a command.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/index.ts';
import { BatonError } from '../../src/core/errors.ts';
import { parseAgentLine } from '../../src/front/probe.ts';
import { diffConfig } from '../../src/daemon/reload.ts';

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'baton.yaml');
  } catch (err) {
    assert.ok(err instanceof BatonError && err.code === 'CONFIG_INVALID', String(err));
    return err.details;
  }
  assert.fail('expected CONFIG_INVALID');
}

const lines = (...l: string[]): string => l.join('\n') + '\n';

test('a front service is normalised apart from the supervised ones, with its defaults', () => {
  const cfg = parseConfig(lines(
    'services:',
    '  shop:',
    '    hosts: [shop.example.com]',
    '    default: true',
    '    targets:',
    '      web1: "10.0.0.11:80"',
    '      web2: { address: "10.0.0.12:8080", weight: 3, agent: "10.0.0.12:9190" }',
    '    balance: round_robin',
    '  admin:',
    '    hosts: [admin.example.com]',
    '    command: node admin.js',
  ), '/etc/baton/baton.yaml');
  assert.deepEqual(cfg.services.map((s) => s.name), ['admin']);
  assert.equal(cfg.fronts.length, 1);
  const f = cfg.fronts[0]!;
  assert.equal(f.name, 'shop');
  assert.equal(f.isDefault, true);
  assert.equal(f.balance, 'round_robin');
  assert.deepEqual(f.targets, [
    { name: 'web1', host: '10.0.0.11', port: 80, weight: 1, agent: null },
    { name: 'web2', host: '10.0.0.12', port: 8080, weight: 3, agent: { host: '10.0.0.12', port: 9190 } },
  ]);
  assert.deepEqual(f.health, { path: '/_baton/health', intervalMs: 1000, timeoutMs: 2000, healthyThreshold: 2, unhealthyThreshold: 2 });
  assert.equal(f.limits.maxBodyBytes, null);
});

test('front services: file:line:key errors for what does not fit', () => {
  assert.deepEqual(problemsOf(lines(
    'services:',
    '  shop:',
    '    hosts: [a.example]',
    '    targets:',
    '      web1: "10.0.0.11"',
    '      web2: { address: "10.0.0.12:80", wieght: 2 }',
    '      web3: { address: "10.0.0.13:80", weight: 0 }',
    '      Web4: "10.0.0.14:80"',
    '      web5: "10.0.0.13:80"',
    '    instances: 2',
    '    health: { path: /h, start_timeout: 5s }',
    '  both:',
    '    command: x',
    '    targets: { a: "10.0.0.1:80" }',
    '  none:',
    '    targets: {}',
    '  other:',
    '    hosts: [a.example]',
    '    targets: { a: 8080 }',
  )), [
    'baton.yaml:5:7: services.shop.targets.web1: expected "host:port" such as "127.0.0.1:8080" or "[::1]:8080", got "10.0.0.11"',
    'baton.yaml:6:40: services.shop.targets.web2.wieght: unknown key (did you mean "weight"?)',
    'baton.yaml:7:40: services.shop.targets.web3.weight: expected an integer from 1 to 256, got 0',
    'baton.yaml:8:7: services.shop.targets.Web4: invalid target name, expected lowercase letters, digits, "_" and "-", starting with a letter or digit, at most 63 characters',
    'baton.yaml:9:7: services.shop.targets.web5: address "10.0.0.13:80" is already target "web3", expected each host:port once',
    'baton.yaml:10:5: services.shop.instances: not used by a front service (one with "targets": baton runs no process for it), expected only hosts, default, targets, health, balance, upstream, drain_timeout, ws_close_spread, limits',
    'baton.yaml:11:25: services.shop.health.start_timeout: not used by a front service (its targets are not started by baton), remove it',
    'baton.yaml:14:5: services.both.targets: a service runs a command or balances targets (other hosts), not both: remove "command" or "targets"',
    'baton.yaml:16:5: services.none.targets: no targets, expected at least one "name: host:port"',
    'baton.yaml:18:13: services.other.hosts[0]: host "a.example" is already claimed by service "shop", expected each host in one service only',
    'baton.yaml:19:16: services.other.targets.a: expected an address "host:port" such as "10.0.0.11:80" (or a mapping with "address"), got 8080',
  ]);
});

test('agent-check lines are read as HAProxy reads them', () => {
  assert.deepEqual(parseAgentLine('ready up 100%\n'), { state: 'ready', percent: 100 });
  assert.deepEqual(parseAgentLine('drain'), { state: 'drain', percent: null });
  assert.deepEqual(parseAgentLine('maint'), { state: 'maint', percent: null });
  assert.deepEqual(parseAgentLine('75%'), { state: null, percent: 75 });
  assert.deepEqual(parseAgentLine('up,10%'), { state: 'ready', percent: 10 });
  assert.equal(parseAgentLine('hello'), null);
});

test('a reload says what changes in a front service, target by target, and that it applies now', () => {
  const before = parseConfig(lines(
    'services:',
    '  shop:',
    '    targets:',
    '      web1: "10.0.0.11:80"',
    '      web2: "10.0.0.12:80"',
    '    health: { interval: 1s }',
  ), '/etc/baton/baton.yaml');
  const after = parseConfig(lines(
    'services:',
    '  shop:',
    '    targets:',
    '      web1: { address: "10.0.0.11:80", weight: 3 }',
    '      web3: "10.0.0.13:80"',
    '    health: { interval: 2s }',
  ), '/etc/baton/baton.yaml');
  const plan = diffConfig(before, after);
  assert.deepEqual(plan.refused, []);
  assert.deepEqual(plan.changes, [
    'services.shop.health.interval: 1.0s → 2.0s (applies now)',
    'services.shop.targets.web1: weight 1 → 3 (applies now)',
    'services.shop.targets.web3: added 10.0.0.13:80 (checked now, routed once it answers)',
    'services.shop.targets.web2: removed (no new request; what it runs finishes within drain_timeout)',
  ]);
});
