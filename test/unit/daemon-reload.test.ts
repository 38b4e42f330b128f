// What a reload reports for each kind of setting: applied now (to the running
// instances too, where they hold it), from the next deploy or start, or refused.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/index.ts';
import { diffConfig, type Effect } from '../../src/daemon/reload.ts';

const BASE = `listen: ["127.0.0.1:8080"]
state_dir: /tmp/baton-reload-unit
services:
  web:
    command: node server.js
`;

function plan(extraTop: string, extraWeb: string, deploying = new Map<string, number>()) {
  const prev = parseConfig(BASE, '/etc/baton.yaml');
  const text = BASE.replace('services:\n', `${extraTop}services:\n`) + extraWeb.split('\n').filter(Boolean).map((l) => `    ${l}\n`).join('');
  return diffConfig(prev, parseConfig(text, '/etc/baton.yaml'), { deploying });
}

function effects(extraTop: string, extraWeb: string): Record<string, Effect> {
  return Object.fromEntries(plan(extraTop, extraWeb).settings.map((c) => [c.key, c.effect]));
}

test('settings the running instances hold are applied to them', () => {
  assert.deepEqual(effects('', 'stop_signal: SIGWINCH\nstop_timeout: 30s\nhealth: { path: /up, interval: 7s, unhealthy_threshold: 5, start_timeout: 1m }'), {
    'services.web.health.path': 'now_running',
    'services.web.health.interval': 'now_running',
    'services.web.health.unhealthy_threshold': 'now_running',
    'services.web.health.start_timeout': 'next_deploy',
    'services.web.stop_signal': 'now_running',
    'services.web.stop_timeout': 'now_running',
  });
});

test('routing and daemon settings apply now; command, env, hooks later; each line says when', () => {
  const p = plan('log_level: debug\nmetrics_listen: "127.0.0.1:9100"\nproxy: { headers_timeout: 5s }\n', 'hosts: [a.test]\ninstances: 3\nenv: { A: "1" }\nhooks: { build: "make" }\nstandby: 1h\ncanary: { steps: [{ weight: 5 }], sticky: { key: client_address } }\nmaintenance: { page: down.html, retry_after: 1m }');
  const by = Object.fromEntries(p.settings.map((c) => [c.key, c]));
  assert.equal(by['log_level']?.effect, 'now');
  assert.equal(by['metrics_listen']?.line, 'metrics_listen: (none) → 127.0.0.1:9100 (applies now)');
  assert.equal(by['proxy.headers_timeout']?.effect, 'now');
  assert.equal(by['services.web.hosts']?.effect, 'now');
  assert.equal(by['services.web.instances']?.line, 'services.web.instances: 1 → 3 (applies now)');
  assert.equal(by['services.web.env']?.line, 'services.web.env: changed (applies on the next deploy or restart; running instances keep the old value)');
  assert.equal(by['services.web.hooks']?.effect, 'next_deploy');
  assert.equal(by['services.web.standby']?.effect, 'next_standby');
  assert.equal(by['services.web.canary.steps']?.effect, 'next_deploy');
  assert.equal(by['services.web.canary.sticky']?.effect, 'now');
  assert.equal(by['services.web.maintenance.page']?.effect, 'next_maintenance');
  assert.equal(by['services.web.maintenance.retry_after']?.effect, 'now');
  assert.ok(p.logLevelChanged && p.metricsChanged && p.proxyChanged);
  assert.deepEqual(p.changedServices, ['web']);
  assert.deepEqual(p.refused, []);
  assert.equal(p.changes.length, p.settings.length);
});

test('listeners, state and socket are refused; so is resizing or removing a service mid-deploy', () => {
  const prev = parseConfig(BASE, '/etc/baton.yaml');
  const moved = parseConfig(BASE.replace('8080', '8081').replace('/tmp/baton-reload-unit', '/tmp/elsewhere'), '/etc/baton.yaml');
  const p = diffConfig(prev, moved);
  assert.deepEqual(p.refused, [
    'listen: [127.0.0.1:8080] → [127.0.0.1:8081]; only a daemon restart applies it',
    'state_dir: "/tmp/baton-reload-unit" → "/tmp/elsewhere"; only a daemon restart applies it',
    `control_socket: "/tmp/baton-reload-unit/baton.sock" → "/tmp/elsewhere/baton.sock"; only a daemon restart applies it`,
  ]);
  const resized = plan('', 'instances: 4\ndrain_timeout: 1m', new Map([['web', 7]]));
  assert.deepEqual(resized.refused, ['services.web.instances: changed while deployment #7 runs; reload again when it is done']);
  const drainOnly = plan('', 'drain_timeout: 1m\nhooks: { build: make }', new Map([['web', 7]]));
  assert.deepEqual(drainOnly.refused, []);
  assert.ok(drainOnly.changes.includes('services.web: deployment #7 in progress keeps the settings it started with'));
  const removed = diffConfig(prev, parseConfig(BASE.replace('  web:\n    command: node server.js\n', '  api:\n    command: x\n'), '/etc/baton.yaml'), { deploying: new Map([['web', 3]]) });
  assert.deepEqual(removed.refused, ['services.web: removed while deployment #3 runs; reload again when it is done']);
  assert.deepEqual(removed.addedServices, ['api']);
});

test('request limits: the head size for new connections, the rest now', () => {
  assert.deepEqual(effects('proxy: { max_header_size: 32KB, max_headers: 50, max_url_length: 4KB, max_connections_per_client: 10 }\n', 'limits: { max_body_size: 1MB }'), {
    'proxy.max_header_size': 'next_connection',
    'proxy.max_connections_per_client': 'next_connection',
    'proxy.max_headers': 'now',
    'proxy.max_url_length': 'now',
    'services.web.limits': 'now',
  });
  const p = plan('proxy: { max_header_size: 32KB }\n', '');
  assert.equal(p.settings[0]?.line, 'proxy.max_header_size: 16384 → 32768 (applies to client connections accepted from now on; open ones keep the old value)');
  assert.ok(p.proxyChanged);
});

test('proxy.workers is refused by a reload: the workers are started with the listeners', () => {
  const p = plan('proxy: { workers: 2 }\n', '');
  assert.deepEqual(p.refused, ['proxy.workers: 1 → 2; only a daemon restart applies it']);
});
