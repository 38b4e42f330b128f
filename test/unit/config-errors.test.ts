// Config loading: bad files give exact "FILE:LINE:COL: path: message" lines.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/index.ts';
import { BatonError } from '../../src/core/errors.ts';

function problemsOf(text: string, file = 'baton.yaml'): string[] {
  try {
    parseConfig(text, file);
  } catch (err) {
    assert.ok(err instanceof BatonError, `not a BatonError: ${String(err)}`);
    assert.equal(err.code, 'CONFIG_INVALID');
    const n = err.details.length;
    assert.equal(err.message, `${file}: ${n} problem${n === 1 ? '' : 's'}`);
    return err.details;
  }
  assert.fail('expected CONFIG_INVALID');
}

const lines = (...l: string[]): string => l.join('\n') + '\n';

const cases: Array<{ name: string; text: string; expect: string[] }> = [
  {
    name: 'unknown key with a suggestion',
    text: lines('services:', '  web:', '    comand: node s.js'),
    expect: [
      'baton.yaml:2:3: services.web.command: missing, expected a command line such as "node server.js"',
      'baton.yaml:3:5: services.web.comand: unknown key (did you mean "command"?)',
    ],
  },
  {
    name: 'unknown key in camelCase, and one with nothing close',
    text: lines('services:', '  web:', '    command: x', '    drainTimeout: 3s', '    colour: blue'),
    expect: [
      'baton.yaml:4:5: services.web.drainTimeout: unknown key (did you mean "drain_timeout"?)',
      'baton.yaml:5:5: services.web.colour: unknown key (expected one of hosts, default, command, targets, env, user, group, logs, public_url, instances, health, drain_timeout, ws_close_spread, stop_signal, stop_timeout, standby, balance, keep_releases, upstream, git, shared, hooks, strategy, canary, maintenance, pause, limits)',
    ],
  },
  {
    name: 'wrong types',
    text: lines('log_level: loud', 'services:', '  web:', '    command: [a]', '    instances: "2"', '    default: yes', '    hosts: example.com'),
    expect: [
      'baton.yaml:1:1: log_level: expected one of "debug", "info", "warn", "error", got "loud"',
      'baton.yaml:4:5: services.web.command: expected a command line such as "node server.js", got a list',
      'baton.yaml:5:5: services.web.instances: expected an integer from 1 to 64, got "2"',
      'baton.yaml:6:5: services.web.default: expected true or false, got "yes"',
      'baton.yaml:7:5: services.web.hosts: expected a list of host names, got "example.com"',
    ],
  },
  {
    name: 'bad duration',
    text: lines('services:', '  web:', '    command: x', '    health:', '      interval: fast', '      timeout: 0', '    standby: -5'),
    expect: [
      'baton.yaml:5:7: services.web.health.interval: expected a duration like "2s" or "500ms" (more than 0), got "fast"',
      'baton.yaml:6:7: services.web.health.timeout: expected a duration of more than 0, got 0',
      'baton.yaml:7:5: services.web.standby: expected a duration like "2s" or "500ms", got -5',
    ],
  },
  {
    name: 'bad listen addresses',
    text: lines('listen: ["127.0.0.1:0", "localhost", "[::zz]:80", "host:99999", 8080]', 'services: { web: { command: x } }'),
    expect: [
      'baton.yaml:1:10: listen[0]: port 0 is out of range, expected 1 to 65535, got "127.0.0.1:0"',
      'baton.yaml:1:25: listen[1]: expected "host:port" such as "127.0.0.1:8080" or "[::1]:8080", got "localhost"',
      'baton.yaml:1:38: listen[2]: "::zz" is not an IPv6 address, got "[::zz]:80"',
      'baton.yaml:1:51: listen[3]: port 99999 is out of range, expected 1 to 65535, got "host:99999"',
      'baton.yaml:1:65: listen[4]: expected an address "host:port" such as "127.0.0.1:8080" (or a mapping with "address"), or a list of them, got 8080',
    ],
  },
  {
    name: 'a single bad listen string',
    text: lines('listen: "8080"', 'services: { web: { command: x } }'),
    expect: ['baton.yaml:1:1: listen: expected "host:port" such as "127.0.0.1:8080" or "[::1]:8080", got "8080"'],
  },
  {
    name: 'duplicate and clashing listen addresses',
    text: lines('listen:', '  - 127.0.0.1:8080', '  - 127.0.0.1:8080', '  - 0.0.0.0:8080', '  - "[::1]:9090"', 'services: { web: { command: x } }'),
    expect: [
      'baton.yaml:3:5: listen[1]: address "127.0.0.1:8080" listed twice, expected each address once',
      'baton.yaml:4:5: listen[2]: address "0.0.0.0:8080" clashes with "127.0.0.1:8080" (same port), expected each address once',
    ],
  },
  {
    name: 'listener mappings: the PROXY protocol needs trusted proxies; keys and values checked',
    text: lines(
      'listen:',
      '  - { address: "0.0.0.0:80", proxy_protocol: true }',
      '  - { address: "0.0.0.0:80" }',
      '  - { adress: "127.0.0.1:81" }',
      '  - { address: "127.0.0.1:82", proxy_protocol: "yes" }',
      'proxy: { trusted_proxies: [] }',
      'tls: { listen: [{ address: "127.0.0.1:8443", proxy_protocol: true }], certificates: [{ hosts: [a.test], cert: c.pem, key: k.pem }] }',
      'services: { web: { command: x } }',
    ),
    expect: [
      'baton.yaml:2:30: listen[0].proxy_protocol: the PROXY protocol is accepted only from trusted proxies, expected proxy.trusted_proxies to list the balancers that send it',
      'baton.yaml:3:5: listen[1]: address "0.0.0.0:80" listed twice, expected each address once',
      'baton.yaml:4:5: listen[2].address: missing, expected an address "host:port" such as "127.0.0.1:8080"',
      'baton.yaml:4:7: listen[2].adress: unknown key (did you mean "address"?)',
      'baton.yaml:5:32: listen[3].proxy_protocol: expected true or false, got "yes"',
      'baton.yaml:7:46: tls.listen[0].proxy_protocol: the PROXY protocol is accepted only from trusted proxies, expected proxy.trusted_proxies to list the balancers that send it',
    ],
  },
  {
    name: 'trusted proxies must be networks',
    text: lines('proxy:', '  trusted_proxies: ["10.0.0.0/8", "10.0.0.0/33", "balancer.internal", 7]', 'services: { web: { command: x } }'),
    expect: [
      'baton.yaml:2:35: proxy.trusted_proxies[1]: expected a prefix length of 0-32, got "10.0.0.0/33"',
      'baton.yaml:2:50: proxy.trusted_proxies[2]: expected a network like "10.0.0.0/8", "2001:db8::/32" or an address, got "balancer.internal"',
      'baton.yaml:2:71: proxy.trusted_proxies[3]: expected a network like "10.0.0.0/8", "2001:db8::/32" or an address, got 7',
    ],
  },
  {
    name: 'duplicate host across services and within one',
    text: lines('services:', '  web:', '    command: x', '    hosts: [example.com, www.example.com]', '  api:', '    command: y', '    hosts: [api.example.com, Example.COM, api.example.com]'),
    expect: [
      'baton.yaml:7:30: services.api.hosts[1]: host "example.com" is already claimed by service "web", expected each host in one service only',
      'baton.yaml:7:43: services.api.hosts[2]: host "api.example.com" is listed twice, expected each host once',
    ],
  },
  {
    name: 'two defaults',
    text: lines('services:', '  web: { command: x, default: true }', '  api: { command: y, default: true }', '  admin: { command: z, default: true }'),
    expect: [
      'baton.yaml:3:22: services.api.default: service "web" is already the default, expected at most one default service',
      'baton.yaml:4:24: services.admin.default: service "web" is already the default, expected at most one default service',
    ],
  },
  {
    name: 'missing command and missing services',
    text: lines('log_level: info'),
    expect: ['baton.yaml:1:1: services: missing, expected a mapping of service names to their settings'],
  },
  {
    name: 'no services, bad service name',
    text: lines('services: {}'),
    expect: ['baton.yaml:1:1: services: no services, expected at least one service'],
  },
  {
    name: 'bad service name, a service with no settings',
    text: lines('services:', '  Web_App:', '    command: x', '  api:'),
    expect: [
      'baton.yaml:2:3: services.Web_App: invalid service name, expected lowercase letters, digits, "_" and "-", starting with a letter or digit, at most 63 characters',
      'baton.yaml:4:3: services.api: expected a mapping of service settings, got nothing',
    ],
  },
  {
    name: 'env: reserved, bad name, bad value',
    text: lines('services:', '  web:', '    command: x', '    env:', '      PORT: 80', '      1X: a', '      OK: [1]', '      BATON_HOOK: x', '      BATON_MODE: y', '      BATON_INSTANCE: z'),
    expect: [
      'baton.yaml:5:7: services.web.env.PORT: PORT is set by baton for each instance, remove it',
      'baton.yaml:6:7: services.web.env.1X: invalid variable name, expected letters, digits and "_", not starting with a digit',
      'baton.yaml:7:7: services.web.env.OK: expected a string, number or boolean, got a list',
      'baton.yaml:8:7: services.web.env.BATON_HOOK: BATON_HOOK is set by baton for each hook, remove it',
      'baton.yaml:9:7: services.web.env.BATON_MODE: names starting with BATON_ are reserved for baton, choose another name',
      'baton.yaml:10:7: services.web.env.BATON_INSTANCE: BATON_INSTANCE is set by baton for each instance, remove it',
    ],
  },
  {
    name: 'YAML syntax error',
    text: lines('services:', '  web:', '    command: "unterminated', '  api: x'),
    expect: ['baton.yaml:3:14: invalid YAML: the double quote opened here is never closed'],
  },
  {
    name: 'YAML: an unclosed quote inside a flow mapping is the cause, not the mapping',
    text: lines('listen: ["127.0.0.1:8080"]', 'services:', '  web: { command: "node server.js }', 'state_dir: ./state'),
    expect: ['baton.yaml:3:19: invalid YAML: the double quote opened here is never closed'],
  },
  {
    name: 'YAML: an unclosed flow list',
    text: lines('listen: ["127.0.0.1:8080"', 'services:', '  web: { command: x }'),
    expect: ['baton.yaml:1:9: invalid YAML: the "[" opened here is never closed with "]"'],
  },
  {
    name: 'YAML: escaped quotes are not unclosed ones',
    text: lines('services:', '  web:', '    command: "echo \\"hi\\" \\\\"', "    env: { A: 'it''s', B: 'open }"),
    expect: ["baton.yaml:4:27: invalid YAML: the single quote opened here is never closed"],
  },
  {
    name: 'YAML duplicate key',
    text: lines('services:', '  web: { command: x }', '  web: { command: y }'),
    expect: ['baton.yaml:3:3: invalid YAML: map keys must be unique'],
  },
  {
    name: 'empty file',
    text: '# nothing here\n',
    expect: ['baton.yaml:1:1: the file is empty, expected at least a "services" mapping'],
  },
  {
    name: 'top level is not a mapping',
    text: lines('- a', '- b'),
    expect: ['baton.yaml:1:1: (top level): expected a mapping of settings, got a list'],
  },
  {
    name: 'host with a port, health path, stop signal, balance',
    text: lines(
      'services:',
      '  web:',
      '    command: x',
      '    hosts: ["example.com:443", "bad_host"]',
      '    health: { path: healthz }',
      '    stop_signal: SIGSTOP',
      '    balance: random',
    ),
    expect: [
      'baton.yaml:4:13: services.web.hosts[0]: expected a host name without a port, got "example.com:443"',
      'baton.yaml:4:32: services.web.hosts[1]: expected a host name like "example.com", got "bad_host"',
      'baton.yaml:5:15: services.web.health.path: expected a path starting with "/", got "healthz"',
      'baton.yaml:6:5: services.web.stop_signal: expected one of "SIGTERM", "SIGINT", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2", "SIGHUP", "SIGKILL", got "SIGSTOP"',
      'baton.yaml:7:5: services.web.balance: expected one of "least_outstanding", "round_robin", got "random"',
    ],
  },
  {
    name: 'request limits: head sizes and field count',
    text: lines(
      'proxy:',
      '  max_header_size: 512',
      '  max_headers: 0',
      '  max_url_length: 2MB',
      'services:',
      '  web:',
      '    command: x',
    ),
    expect: [
      'baton.yaml:2:3: proxy.max_header_size: expected a size of at least 1KB, got 512',
      'baton.yaml:3:3: proxy.max_headers: expected an integer from 1 to 10000, got 0',
      'baton.yaml:4:3: proxy.max_url_length: expected a size of at most 1MB, got "2MB"',
    ],
  },
  {
    name: 'a URL limit the parser would never let answer',
    text: lines('proxy:', '  max_header_size: 8KB', 'services:', '  web:', '    command: x'),
    expect: [
      'baton.yaml:2:3: proxy.max_header_size: max_url_length (8192 bytes) must be below max_header_size (8192 bytes): the parser counts the URL in the head, so a longer URL gets 431 before max_url_length can answer 414',
    ],
  },
  {
    name: 'service limits',
    text: lines('services:', '  web:', '    command: x', '    limits: { max_body_size: 0, max_bodysize: 1MB }'),
    expect: [
      'baton.yaml:4:15: services.web.limits.max_body_size: expected a size of at least 1 byte, got 0',
      'baton.yaml:4:33: services.web.limits.max_bodysize: unknown key (did you mean "max_body_size"?)',
    ],
  },
];

for (const c of cases) {
  test(`config error: ${c.name}`, () => {
    assert.deepEqual(problemsOf(c.text), c.expect);
  });
}

test('many problems at once, in file order, with the path as given', () => {
  const text = lines(
    'listen: "nope"',
    'statedir: ./s',
    'proxy:',
    '  headers_timeout: 1x',
    'services:',
    '  web:',
    '    hosts: [a.example]',
    '    default: true',
    '    command: x',
    '    instances: 65',
    '    upstream: { connect_timeout: 0.5, keepalive: 1s }',
    '  api:',
    '    hosts: [a.example]',
    '    default: true',
  );
  assert.deepEqual(problemsOf(text, 'conf/prod.yaml'), [
    'conf/prod.yaml:1:1: listen: expected "host:port" such as "127.0.0.1:8080" or "[::1]:8080", got "nope"',
    'conf/prod.yaml:2:1: statedir: unknown key (did you mean "state_dir"?)',
    'conf/prod.yaml:4:3: proxy.headers_timeout: expected a duration like "2s" or "500ms" (more than 0), got "1x"',
    'conf/prod.yaml:10:5: services.web.instances: expected an integer from 1 to 64, got 65',
    'conf/prod.yaml:11:39: services.web.upstream.keepalive: unknown key (did you mean "keepalive_timeout"?)',
    'conf/prod.yaml:12:3: services.api.command: missing, expected a command line such as "node server.js"',
    'conf/prod.yaml:13:13: services.api.hosts[0]: host "a.example" is already claimed by service "web", expected each host in one service only',
    'conf/prod.yaml:14:5: services.api.default: service "web" is already the default, expected at most one default service',
  ]);
});

test('a control socket path too long for the OS', () => {
  const dir = 'd'.repeat(120);
  const details = problemsOf(lines(`state_dir: /${dir}`, 'services: { web: { command: x } }'), '/etc/baton.yaml');
  assert.equal(details.length, 1);
  assert.match(details[0] ?? '', /^\/etc\/baton\.yaml:1:1: state_dir: the control socket path ".*" is 132 bytes, expected at most 107/);
});
