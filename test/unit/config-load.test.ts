// Config loading: a good file normalised (defaults, ms, absolute paths), the
// default-service rule, and unreadable files.

import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, parseConfig, type DaemonConfig, type ServiceConfig } from '../../src/config/index.ts';
import { BatonError } from '../../src/core/errors.ts';
import { defaultService } from '../../src/config/index.ts';

const DEFAULTS = defaultService('web', 'true');

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'baton-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const FULL = `
listen: ["0.0.0.0:80", "[::1]:8080"]
state_dir: ./var
control_socket: /run/baton/ctl.sock
log_level: debug
proxy:
  client_idle_timeout: 2m
  headers_timeout: 1.5s
  max_header_size: 32KB
  max_headers: 50
  max_url_length: 2KB
services:
  web:
    hosts: [Example.com, www.example.com]
    default: true
    command: "exec gunicorn app:wsgi"
    env: { NODE_ENV: production, WORKERS: 4, DEBUG: false }
    instances: 2
    health:
      path: /healthz
      interval: 500ms
      timeout: 1
      healthy_threshold: 2
      unhealthy_threshold: 5
      start_timeout: 1m30s
    drain_timeout: 45s
    stop_signal: SIGWINCH
    stop_timeout: 20s
    standby: 0
    balance: round_robin
    keep_releases: 3
    upstream:
      keepalive_timeout: 1.5s
      connect_timeout: 250ms
      response_timeout: 1h
    limits:
      max_body_size: 10MB
      max_inflight: 50
      max_queued: 20
      queue_timeout: 2s
  api:
    hosts: [api.example.com]
    command: node api.js
    health:
`;

const defaults: Omit<ServiceConfig, 'name' | 'hosts' | 'isDefault' | 'command'> = {
  env: {},
  runAs: null,
  publicUrl: null,
  logs: { maxBytes: 10 * 1024 * 1024, keep: 5 },
  instances: 1,
  health: { path: '/', intervalMs: 1000, timeoutMs: 2000, healthyThreshold: 1, unhealthyThreshold: 3, startTimeoutMs: 30_000 },
  drainTimeoutMs: 30_000,
  wsCloseSpreadMs: 10_000,
  stopSignal: 'SIGTERM',
  stopTimeoutMs: 10_000,
  standbyMs: 300_000,
  balance: 'least_outstanding',
  upstream: { keepAliveTimeoutMs: 1000, connectTimeoutMs: 2000, responseTimeoutMs: 60_000 },
  keepReleases: 5,
  git: null,
  shared: [],
  hooks: { build: null, migrate: null, smoke: null, afterSwitch: null },
  strategy: 'blue_green',
  canary: DEFAULTS.canary,
  maintenance: DEFAULTS.maintenance,
  pause: DEFAULTS.pause,
  limits: { maxBodyBytes: null, maxInflight: null, maxQueued: 100, queueTimeoutMs: 5000 },
};

test('a full file is normalised', () => {
  const expected: DaemonConfig = {
    file: '/etc/baton/baton.yaml',
    listeners: [{ host: '0.0.0.0', port: 80 }, { host: '::1', port: 8080 }],
    stateDir: '/etc/baton/var',
    controlSocket: '/run/baton/ctl.sock',
    fronts: [],
    control: { gid: null, group: null, mode: 0o600, remote: null },
    logLevel: 'debug',
    metricsListener: null,
    dashboard: null,
    agentCheckListener: null,
    proxy: { clientIdleTimeoutMs: 120_000, headersTimeoutMs: 1500, trustedProxies: [], maxHeaderSize: 32768, maxHeaders: 50, maxUrlLength: 2048, maxConnectionsPerClient: 256, workers: 1, accessLog: null, http1FastPath: true },
    tls: null,
    services: [
      {
        name: 'web',
        hosts: ['example.com', 'www.example.com'],
        isDefault: true,
        command: 'exec gunicorn app:wsgi',
        env: { NODE_ENV: 'production', WORKERS: '4', DEBUG: 'false' },
        runAs: null,
        publicUrl: null,
        logs: { maxBytes: 10 * 1024 * 1024, keep: 5 },
        instances: 2,
        health: { path: '/healthz', intervalMs: 500, timeoutMs: 1000, healthyThreshold: 2, unhealthyThreshold: 5, startTimeoutMs: 90_000 },
        drainTimeoutMs: 45_000,
        wsCloseSpreadMs: 10_000,
        stopSignal: 'SIGWINCH',
        stopTimeoutMs: 20_000,
        standbyMs: 0,
        balance: 'round_robin',
        upstream: { keepAliveTimeoutMs: 1500, connectTimeoutMs: 250, responseTimeoutMs: 3_600_000 },
        keepReleases: 3,
        git: null,
        shared: [],
        hooks: { build: null, migrate: null, smoke: null, afterSwitch: null },
  strategy: 'blue_green',
  canary: DEFAULTS.canary,
  maintenance: DEFAULTS.maintenance,
  pause: DEFAULTS.pause,
  limits: { maxBodyBytes: 10 * 1024 * 1024, maxInflight: 50, maxQueued: 20, queueTimeoutMs: 2000 },
      },
      { ...defaults, name: 'api', hosts: ['api.example.com'], isDefault: false, command: 'node api.js' },
    ],
  };
  assert.deepEqual(parseConfig(FULL, '/etc/baton/baton.yaml'), expected);
});

test('a minimal single-service file gets every default and is the default service', () => {
  const cfg = parseConfig('services:\n  web:\n    command: node server.js\n', '/srv/app/baton.yaml');
  assert.deepEqual(cfg, {
    file: '/srv/app/baton.yaml',
    listeners: [{ host: '127.0.0.1', port: 8080 }],
    stateDir: '/srv/app/state',
    controlSocket: '/srv/app/state/baton.sock',
    control: { gid: null, group: null, mode: 0o600, remote: null },
    logLevel: 'info',
    metricsListener: null,
    dashboard: null,
    agentCheckListener: null,
    proxy: { clientIdleTimeoutMs: 60_000, headersTimeoutMs: 10_000, trustedProxies: [], maxHeaderSize: 16 * 1024, maxHeaders: 100, maxUrlLength: 8 * 1024, maxConnectionsPerClient: 256, workers: 1, accessLog: null, http1FastPath: true },
    tls: null,
    services: [{ ...defaults, name: 'web', hosts: [], isDefault: true, command: 'node server.js' }],
    fronts: [],
  });
});

test('a single service can opt out of being the default; several services have none unless said', () => {
  const one = parseConfig('services: { web: { command: x, default: false } }', '/a/b.yaml');
  assert.equal(one.services[0]?.isDefault, false);
  const two = parseConfig('services: { web: { command: x }, api: { command: y } }', '/a/b.yaml');
  assert.deepEqual(two.services.map((s) => s.isDefault), [false, false]);
});

test('relative paths resolve against the config file directory; a single listen string is accepted', () => {
  const cfg = parseConfig('listen: LocalHost:9000\nstate_dir: ../state\ncontrol_socket: run/b.sock\nservices: { web: { command: x } }', 'conf/baton.yaml');
  assert.equal(cfg.file, join(process.cwd(), 'conf/baton.yaml'));
  assert.equal(cfg.stateDir, join(process.cwd(), 'state'));
  assert.equal(cfg.controlSocket, join(process.cwd(), 'conf/run/b.sock'));
  assert.deepEqual(cfg.listeners, [{ host: 'localhost', port: 9000 }]);
});

test('loadConfig reads a file and reports problems with the path as given', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'baton.yaml');
  writeFileSync(file, 'services:\n  web:\n    command: node s.js\n');
  const cfg = await loadConfig(file);
  assert.equal(cfg.stateDir, join(dir, 'state'));
  writeFileSync(file, 'services:\n  web:\n    commnd: x\n');
  await assert.rejects(loadConfig(file), (err) => {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'CONFIG_INVALID');
    assert.equal(err.details[1], `${file}:3:5: services.web.commnd: unknown key (did you mean "command"?)`);
    return true;
  });
});

test('an unreadable file is CONFIG_UNREADABLE with the path and the reason', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(loadConfig(join(dir, 'missing.yaml')), (err) => {
    assert.ok(err instanceof BatonError);
    assert.equal(err.code, 'CONFIG_UNREADABLE');
    assert.equal(err.message, `${join(dir, 'missing.yaml')}: cannot read the config file: no such file`);
    return true;
  });
  await assert.rejects(loadConfig(dir), (err) => err instanceof BatonError && err.code === 'CONFIG_UNREADABLE' && err.message.includes('EISDIR'));
});

test('listeners as mappings (PROXY protocol) and trusted proxies', () => {
  const cfg = parseConfig(
    [
      'listen:',
      '  - "0.0.0.0:80"',
      '  - { address: "10.0.0.5:8080", proxy_protocol: true }',
      '  - { address: "[::1]:8081", proxy_protocol: false }',
      'proxy: { trusted_proxies: ["10.0.0.0/24", "192.0.2.7", "2001:db8::/32"] }',
      'services: { web: { command: x } }',
    ].join('\n'),
    '/a/baton.yaml',
  );
  assert.deepEqual(cfg.listeners, [{ host: '0.0.0.0', port: 80 }, { host: '10.0.0.5', port: 8080, proxyProtocol: true }, { host: '::1', port: 8081 }]);
  assert.deepEqual(cfg.proxy.trustedProxies, ['10.0.0.0/24', '192.0.2.7/32', '2001:db8::/32']);
  // A single mapping works as a single string does.
  const one = parseConfig('listen: { address: "127.0.0.1:9000" }\nservices: { web: { command: x } }', '/a/baton.yaml');
  assert.deepEqual(one.listeners, [{ host: '127.0.0.1', port: 9000 }]);
});

test('proxy.workers: an integer from 1, or "auto" (the cores); with tls too', () => {
  const parse = (proxy: string, extra = ''): DaemonConfig => parseConfig(`proxy: ${proxy}\n${extra}services: { web: { command: x } }`, '/a/baton.yaml');
  assert.equal(parse('{ workers: 3 }').proxy.workers, 3);
  assert.equal(parse('{ workers: auto }').proxy.workers, availableParallelism());
  assert.equal(parse('{}').proxy.workers, 1);
  for (const bad of ['0', '1.5', '"two"', '999']) {
    assert.throws(() => parse(`{ workers: ${bad} }`), (err) => err instanceof BatonError && err.details.some((d) => /proxy\.workers.*an integer from 1 to 256, or "auto"/.test(d)), bad);
  }
  const tls = 'tls: { listen: "127.0.0.1:8443", certificates: [{ hosts: [a.example], cert: c.pem, key: k.pem }] }\n';
  assert.equal(parse('{ workers: 2 }', tls).proxy.workers, 2);
  assert.equal(parse('{ workers: 1 }', tls).proxy.workers, 1);
});

test('proxy.access_log: off by default; "stdout", a path (relative to the file) or { path, max_size, keep }; with workers > 1 too', () => {
  const parse = (proxy: string): DaemonConfig => parseConfig(`proxy: ${proxy}\nservices: { web: { command: x } }`, '/a/baton.yaml');
  assert.equal(parse('{}').proxy.accessLog, null);
  assert.deepEqual(parse('{ access_log: stdout }').proxy.accessLog, { path: 'stdout', maxBytes: 10 * 1024 * 1024, keep: 5 });
  assert.deepEqual(parse('{ access_log: logs/access.log }').proxy.accessLog, { path: '/a/logs/access.log', maxBytes: 10 * 1024 * 1024, keep: 5 });
  assert.deepEqual(parse('{ access_log: { path: /var/log/baton/access.log, max_size: 1MB, keep: 2 } }').proxy.accessLog, { path: '/var/log/baton/access.log', maxBytes: 1024 * 1024, keep: 2 });
  const refused = (proxy: string, message: RegExp): void => {
    assert.throws(() => parse(proxy), (err) => err instanceof BatonError && err.details.some((d) => message.test(d)), proxy);
  };
  refused('{ access_log: 3 }', /baton\.yaml:1:\d+: proxy\.access_log: expected a file path, "stdout", or a mapping with "path", "max_size" and "keep", got 3/);
  refused('{ access_log: { path: a.log, keep: 101 } }', /proxy\.access_log\.keep: expected an integer from 0 to 100/);
  refused('{ access_log: { max_size: 1MB } }', /proxy\.access_log\.path: missing/);
  refused('{ access_log: { path: a.log, size: 1MB } }', /proxy\.access_log\.size/);
  assert.deepEqual(parse('{ access_log: a.log, workers: 2 }').proxy.accessLog, { path: '/a/a.log', maxBytes: 10 * 1024 * 1024, keep: 5 });
});
