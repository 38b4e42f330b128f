// The fleet file: checked like baton.yaml (file:line:col, unknown keys with a
// "did you mean"), defaults filled; and the order hosts switch in.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFleetConfig } from '../../src/fleet/config.ts';
import { planBatches } from '../../src/fleet/plan.ts';
import { isBatonError } from '../../src/core/errors.ts';

function problems(text: string): string[] {
  try {
    parseFleetConfig(text, 'fleet.yaml');
  } catch (e) {
    assert.ok(isBatonError(e));
    assert.equal(e.code, 'CONFIG_INVALID');
    return e.details;
  }
  assert.fail('expected the file to be refused');
}

test('a short fleet file gets every default', () => {
  const c = parseFleetConfig('hosts: [web1, deploy@10.0.0.5]\n', '/srv/fleet.yaml');
  assert.equal(c.name, 'fleet');
  assert.deepEqual(c.hosts.map((h) => [h.name, h.destination, h.baton, h.config, h.artifacts, h.server]), [
    ['web1', 'web1', 'baton', null, '.cache/baton/artifacts', 'web1'],
    ['deploy@10.0.0.5', 'deploy@10.0.0.5', 'baton', null, '.cache/baton/artifacts', 'deploy@10.0.0.5'],
  ]);
  assert.deepEqual(c.balancer, { type: 'none' });
  assert.deepEqual(c.rollout, { batch: { hosts: 1 }, canary: 0, bakeMs: 0, healthyDeadlineMs: 300_000, maxFailures: 0, revert: true, drain: false, analysis: null });
  assert.equal(c.ssh.configFile, null);
});

test('hosts with settings, host_defaults, a balancer and a policy', () => {
  const c = parseFleetConfig([
    'name: shop',
    'ssh: { config: ./ssh_config, options: ["ProxyJump=bastion"] }',
    'host_defaults: { baton: /usr/local/bin/baton, config: /etc/baton/baton.yaml }',
    'hosts:',
    '  web1: { labels: [eu], server: srv1 }',
    '  web2: { ssh: deploy@web2.internal, services: [api] }',
    'balancer: { type: haproxy, via: runtime, host: lb1, socket: /run/haproxy/admin.sock, backend: be_app }',
    'rollout: { batch: 25%, canary: 1, bake: 30s, max_failures: 1, revert: false }',
    '',
  ].join('\n'), '/srv/fleet.yaml');
  assert.equal(c.ssh.configFile, '/srv/ssh_config');
  assert.deepEqual(c.ssh.options, ['ProxyJump=bastion']);
  assert.equal(c.hosts[0]!.server, 'srv1');
  assert.equal(c.hosts[1]!.destination, 'deploy@web2.internal');
  assert.equal(c.hosts[1]!.baton, '/usr/local/bin/baton');
  assert.deepEqual(c.hosts[1]!.services, ['api']);
  assert.deepEqual(c.balancer, { type: 'haproxy', via: 'runtime', host: 'lb1', socket: '/run/haproxy/admin.sock', backend: 'be_app', quietMs: 2_000, drainTimeoutMs: 60_000 });
  assert.deepEqual(c.rollout.batch, { percent: 25 });
  assert.equal(c.rollout.bakeMs, 30_000);
  assert.equal(c.rollout.revert, false);
});

test('unknown keys are refused at their line and column, with a suggestion', () => {
  assert.deepEqual(problems([
    'hosts:',
    '  web1: { lables: [eu] }',
    'rollout:',
    '  bacth: 2',
    '  bake: soon',
    '',
  ].join('\n')), [
    'fleet.yaml:2:11: hosts.web1.lables: unknown key (did you mean "labels"?)',
    'fleet.yaml:4:3: rollout.bacth: unknown key (did you mean "batch"?)',
    'fleet.yaml:5:3: rollout.bake: expected a duration like "2s" or "500ms", got "soon"',
  ]);
});

test('values that do not fit together are refused', () => {
  assert.deepEqual(problems('hosts: [a, b]\nrollout: { canary: 1, batch: 0% }\n'), ['fleet.yaml:2:23: rollout.batch: expected a share from 1% to 100%, got "0%"']);
  assert.deepEqual(problems('hosts: [a, b]\nbalancer: { type: haproxy, via: runtime }\n'), [
    'fleet.yaml:2:1: balancer.socket: missing, expected the path of HAProxy\'s stats socket (level admin) on the balancer\'s host',
    'fleet.yaml:2:1: balancer.host: missing, expected the ssh destination of the balancer\'s host',
  ]);
  assert.deepEqual(problems('hosts: [a, b]\nrollout: { canary: 2, drain: true }\n'), [
    'fleet.yaml:2:12: rollout.canary: expected fewer canary hosts than hosts (2)',
    'fleet.yaml:2:23: rollout.drain: needs a balancer (balancer.type "haproxy", "readiness" or "baton") to drain from',
  ]);
  assert.deepEqual(problems('hosts: ["-oProxyCommand=x"]\n'), ['fleet.yaml:1:9: hosts[0]: expected an ssh destination such as "web1", got "-oProxyCommand=x"']);
});

test('batches: canaries one by one, the first host alone (it migrates), then N or N% at a time', () => {
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h5'];
  assert.deepEqual(planBatches(hosts, { canary: 1, batch: { hosts: 2 } }).map((b) => [b.canary, b.hosts]), [[true, ['h1']], [false, ['h2', 'h3']], [false, ['h4', 'h5']]]);
  assert.deepEqual(planBatches(hosts, { canary: 0, batch: { hosts: 2 } }).map((b) => b.hosts), [['h1'], ['h2', 'h3'], ['h4', 'h5']]);
  assert.deepEqual(planBatches(hosts, { canary: 0, batch: { percent: 50 } }).map((b) => b.hosts), [['h1'], ['h2', 'h3', 'h4'], ['h5']]);
  assert.deepEqual(planBatches(['h1'], { canary: 0, batch: { hosts: 3 } }).map((b) => b.hosts), [['h1']]);
});

test('at most N hosts at a time, results in order, failures kept', async () => {
  const { settledWithLimit } = await import('../../src/fleet/limit.ts');
  let running = 0;
  let most = 0;
  const r = await settledWithLimit([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
    running++;
    most = Math.max(most, running);
    await new Promise((res) => setImmediate(res));
    running--;
    if (n === 4) throw new Error('four');
    return n * 10;
  });
  assert.equal(most, 3);
  assert.deepEqual(r.map((x) => (x.status === 'fulfilled' ? x.value : (x.reason as Error).message)), [10, 20, 30, 'four', 50, 60, 70]);
});

test('a front baton as the balancer, and the analysis latency settings', () => {
  const c = parseFleetConfig([
    'hosts: [web1, web2]',
    'balancer: { type: baton, host: lb1, service: shop, baton: /usr/local/bin/baton, config: /etc/baton/front.yaml }',
    'rollout: { analysis: { max_p99_ratio: 2, p99_floor: 80ms } }',
  ].join('\n') + '\n', '/srv/fleet.yaml');
  assert.deepEqual(c.balancer, { type: 'baton', host: 'lb1', service: 'shop', baton: '/usr/local/bin/baton', config: '/etc/baton/front.yaml', drainTimeoutMs: 60_000 });
  assert.deepEqual(c.rollout.analysis, { minRequests: 100, maxErrorRate: 0.01, maxConnectionErrorRate: 0.01, maxP99Ratio: 2, p99FloorMs: 80 });
  assert.deepEqual(problems('hosts: [a]\nbalancer: { type: baton, quiet: 2s }\n'), [
    'fleet.yaml:2:1: balancer.host: missing, expected the ssh destination of the front baton\'s host',
    'fleet.yaml:2:1: balancer.service: missing, expected the name of the front service whose targets are the hosts',
    'fleet.yaml:2:26: balancer.quiet: not for type "baton": the drain is done when the front has nothing in flight to the host',
  ]);
  assert.deepEqual(problems('hosts: [a]\nbalancer: { type: readiness, service: shop, host: lb1 }\n'), [
    'fleet.yaml:2:30: balancer.service: only for type "baton"',
    'fleet.yaml:2:45: balancer.host: only for type "haproxy" or "baton"',
  ]);
});
