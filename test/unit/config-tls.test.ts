// The tls: section of baton.yaml: normalised values and the messages of bad ones.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/index.ts';
import { BatonError } from '../../src/core/errors.ts';

function problemsOf(text: string): string[] {
  try {
    parseConfig(text, 'baton.yaml');
  } catch (err) {
    assert.ok(err instanceof BatonError && err.code === 'CONFIG_INVALID', `not CONFIG_INVALID: ${String(err)}`);
    return err.details;
  }
  assert.fail('expected CONFIG_INVALID');
}

const SERVICES = 'services: { web: { command: x } }';

test('a tls section is normalised: paths absolute, first certificate the default, ACME defaults', () => {
  const cfg = parseConfig(
    [
      'listen: "0.0.0.0:80"',
      'tls:',
      '  listen: ["0.0.0.0:443"]',
      '  certificates:',
      '    - { hosts: [Example.com, "*.example.com"], cert: certs/a.pem, key: certs/a.key }',
      '    - { hosts: [b.example.org], cert: /etc/b.pem, key: /etc/b.key }',
      '  acme: { hosts: [shop.example.com], renew_before: 30d }',
      SERVICES,
    ].join('\n'),
    '/srv/baton.yaml',
  );
  assert.deepEqual(cfg.tls, {
    listeners: [{ host: '0.0.0.0', port: 443 }],
    certificates: [
      { hosts: ['example.com', '*.example.com'], certFile: '/srv/certs/a.pem', keyFile: '/srv/certs/a.key', isDefault: true },
      { hosts: ['b.example.org'], certFile: '/etc/b.pem', keyFile: '/etc/b.key', isDefault: false },
    ],
    acme: { hosts: ['shop.example.com'], email: null, directoryUrl: 'https://acme-v02.api.letsencrypt.org/directory', caFile: null, renewBeforeMs: 30 * 86_400_000, challenge: 'http-01' },
    http2: true,
    redirectHttp: false,
    hsts: false,
    handshakeTimeoutMs: 10_000,
    maxConcurrentStreams: 100,
    maxConnectionsPerClient: 256,
  });
  const explicit = parseConfig(
    ['tls:', '  listen: "127.0.0.1:8443"', '  certificates:', '    - { hosts: [a.test], cert: a.pem, key: a.key }', '    - { hosts: [b.test], cert: b.pem, key: b.key, default: true }', SERVICES].join('\n'),
    '/x/baton.yaml',
  );
  assert.deepEqual(explicit.tls?.certificates.map((c) => c.isDefault), [false, true]);
});

test('tls problems are reported at their key with what is expected', () => {
  const details = problemsOf(
    [
      'listen: "127.0.0.1:8080"',
      'tls:',
      '  listen: ["127.0.0.1:8080", "0.0.0.0:8443"]',
      '  certificates:',
      '    - { hosts: ["*.com"], cert: a.pem, key: a.key, default: true }',
      '    - { hosts: [b.test], cert: b.pem, key: b.key, default: true }',
      '  acme: { hosts: ["*.example.com"], directory: "http://acme.test/dir", renew_before: 0 }',
      '  hsts: yes',
      '  max_concurent_streams: 10',
      SERVICES,
    ].join('\n'),
  );
  const expected = [
    /tls\.listen\[0\]: address "127\.0\.0\.1:8080" clashes with the plain listener "127\.0\.0\.1:8080"/,
    /tls\.certificates\[0\]\.hosts\[0\]: expected a host name like "example\.com" or "\*\.example\.com", got "\*\.com"/,
    /tls\.certificates\[1\]\.default: certificate 1 is already the default/,
    /tls\.acme\.hosts\[0\]: expected a host name like "example\.com"/,
    /tls\.acme\.directory: expected an https:\/\/ URL of an ACME directory \(ACME requires HTTPS\)/,
    /tls\.acme\.renew_before: expected a duration of more than 0/,
    /tls\.hsts: expected true or false/,
    /tls\.max_concurent_streams: unknown key \(did you mean "max_concurrent_streams"\?\)/,
  ];
  for (const re of expected) assert.ok(details.some((d) => re.test(d)), `no problem matching ${re} in:\n${details.join('\n')}`);
});

test('tls needs a certificate source; ACME needs a plain listener', () => {
  assert.ok(problemsOf(['tls: { listen: "127.0.0.1:8443" }', SERVICES].join('\n')).some((d) => d.includes('tls: no certificate source')));
  assert.ok(problemsOf(['listen: []', 'tls: { listen: "127.0.0.1:8443", acme: { hosts: [a.test] } }', SERVICES].join('\n')).length > 0);
});

test('a reload that changes tls (or control.remote) is refused: only a restart applies it', async () => {
  const { diffConfig } = await import('../../src/daemon/reload.ts');
  const base = (extra: string): string => ['listen: "127.0.0.1:8080"', extra, SERVICES].join('\n');
  const prev = parseConfig(base('tls: { listen: "127.0.0.1:8443", certificates: [{ hosts: [a.test], cert: a.pem, key: a.key }] }'), '/x/baton.yaml');
  const next = parseConfig(base('tls: { listen: "127.0.0.1:8443", certificates: [{ hosts: [a.test], cert: b.pem, key: b.key }] }'), '/x/baton.yaml');
  const plan = diffConfig(prev, next);
  assert.equal(plan.refused.length, 1, JSON.stringify(plan));
  assert.match(plan.refused[0]!, /^tls: .*only a daemon restart applies it/);
  const same = diffConfig(prev, parseConfig(base('tls: { listen: "127.0.0.1:8443", certificates: [{ hosts: [a.test], cert: a.pem, key: a.key }] }'), '/x/baton.yaml'));
  assert.deepEqual(same.refused, []);
  const remote = diffConfig(prev, parseConfig(base('tls: { listen: "127.0.0.1:8443", certificates: [{ hosts: [a.test], cert: a.pem, key: a.key }] }\ncontrol: { remote: { listen: "127.0.0.1:9443", cert: c.pem, key: c.key, token_file: t } }'), '/x/baton.yaml'));
  assert.match(remote.refused.join('\n'), /^control: .*only a daemon restart applies it/m);
});

test('a TLS listener behind a TCP balancer: proxy_protocol with trusted proxies', () => {
  const cfg = parseConfig(
    [
      'proxy: { trusted_proxies: ["10.0.0.10"] }',
      'tls:',
      '  listen: [{ address: "0.0.0.0:443", proxy_protocol: true }, "127.0.0.1:8443"]',
      '  certificates: [{ hosts: [a.test], cert: /etc/a.pem, key: /etc/a.key }]',
      SERVICES,
    ].join('\n'),
    '/srv/baton.yaml',
  );
  assert.deepEqual(cfg.tls?.listeners, [{ host: '0.0.0.0', port: 443, proxyProtocol: true }, { host: '127.0.0.1', port: 8443 }]);
});

test('tls.acme.challenge: http-01 by default, tls-alpn-01 on request, nothing else', () => {
  const base = (extra: string): string => ['tls:', '  listen: ["0.0.0.0:443"]', `  acme: { hosts: [shop.example.com]${extra} }`, SERVICES].join('\n');
  assert.equal(parseConfig(base(''), '/srv/baton.yaml').tls?.acme?.challenge, 'http-01');
  assert.equal(parseConfig(base(', challenge: tls-alpn-01'), '/srv/baton.yaml').tls?.acme?.challenge, 'tls-alpn-01');
  const problems = problemsOf(base(', challenge: dns-01'));
  assert.equal(problems.length, 1, problems.join('\n'));
  assert.match(problems[0]!, /tls\.acme\.challenge: .*"http-01".*"tls-alpn-01".*got "dns-01"/);
});
