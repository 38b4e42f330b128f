import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/index.ts';
import { BatonError } from '../../src/core/errors.ts';

const base = (canary: string): string => `metrics_listen: "127.0.0.1:9180"
services:
  web:
    command: node server.js
    strategy: canary
${canary}`;

test('canary steps, analysis, stickiness and beta rules are normalised', () => {
  const c = parseConfig(
    base(`    canary:
      steps:
        - weight: 5
        - pause: 10s
        - analysis: 2m
        - analysis: true
        - pause: promote
        - weight: 100
      analysis: { window: 30s, min_requests: 50, max_error_rate: 0.02 }
      sticky: { key: "header:X-User-Id" }
      beta: { header: "X-Baton-Release: canary", networks: [10.1.0.0/16, "::1"] }
    maintenance: { retry_after: 1m, allow: [192.168.0.0/16] }
    pause: { max_queued: 10, max_wait: 5s }
`),
    '/etc/baton.yaml',
  );
  const s = c.services[0]!;
  assert.deepEqual(c.metricsListener, { host: '127.0.0.1', port: 9180 });
  assert.equal(s.strategy, 'canary');
  assert.deepEqual(s.canary.steps, [
    { kind: 'weight', weight: 5 },
    { kind: 'pause', ms: 10_000 },
    { kind: 'analysis', windowMs: 120_000 },
    { kind: 'analysis', windowMs: 30_000 },
    { kind: 'pause_until_promoted' },
    { kind: 'weight', weight: 100 },
  ]);
  assert.equal(s.canary.analysis.minRequests, 50);
  assert.equal(s.canary.analysis.maxErrorRate, 0.02);
  assert.deepEqual(s.canary.sticky, { cookie: 'baton_bucket', key: { kind: 'header', header: 'x-user-id' } });
  assert.deepEqual(s.canary.beta, { cookie: 'baton_beta', header: { name: 'x-baton-release', value: 'canary' }, networks: ['10.1.0.0/16', '::1/128'] });
  assert.deepEqual(s.maintenance, { pageFile: null, retryAfterSeconds: 60, allow: ['192.168.0.0/16'] });
  assert.deepEqual(s.pause, { maxQueued: 10, maxWaitMs: 5000 });
});

test('bad canary settings are reported at their line with what is expected', () => {
  assert.throws(
    () =>
      parseConfig(
        base(`    canary:
      steps:
        - weight: 150
        - pause: soon
        - wait: 1s
      sticky: { key: cookie }
      beta: { networks: [10.0.0.0/40, nonsense] }
`),
        'baton.yaml',
      ),
    (err) => {
      assert.ok(err instanceof BatonError);
      assert.deepEqual(err.details, [
        'baton.yaml:8:11: services.web.canary.steps[0].weight: expected a percentage from 0 to 100, got 150',
        'baton.yaml:9:11: services.web.canary.steps[1].pause: expected a duration like "30s", or "promote" to wait for `baton promote`, got "soon"',
        'baton.yaml:10:11: services.web.canary.steps[2].wait: unknown step "wait", expected a step: "weight: 10", "pause: 30s", "pause: promote" or "analysis: 1m"',
        'baton.yaml:11:17: services.web.canary.sticky.key: expected "random", "client_address" or "header:NAME", got "cookie"',
        'baton.yaml:12:26: services.web.canary.beta.networks[0]: expected a prefix length of 0-32, got "10.0.0.0/40"',
        'baton.yaml:12:39: services.web.canary.beta.networks[1]: expected a network like "10.0.0.0/8", "2001:db8::/32" or an address, got "nonsense"',
      ]);
      return true;
    },
  );
});
