// The base of the links baton hands out (`baton beta`): the listener's scheme
// and port, the service's host, or a configured public_url.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { publicBase } from '../../src/daemon/public-url.ts';

const l = (host: string, port: number) => ({ host, port });

test('plain listener: http, the service host, the port unless 80', () => {
  assert.equal(publicBase({ publicUrl: null, hosts: ['example.com'], plain: [l('0.0.0.0', 8080)], tls: [] }), 'http://example.com:8080');
  assert.equal(publicBase({ publicUrl: null, hosts: ['example.com'], plain: [l('0.0.0.0', 80)], tls: [] }), 'http://example.com');
  assert.equal(publicBase({ publicUrl: null, hosts: [], plain: [l('127.0.0.1', 8080)], tls: [] }), 'http://127.0.0.1:8080');
  assert.equal(publicBase({ publicUrl: null, hosts: [], plain: [l('::', 8080)], tls: [] }), 'http://localhost:8080');
  assert.equal(publicBase({ publicUrl: null, hosts: [], plain: [l('::1', 8080)], tls: [] }), 'http://[::1]:8080');
});

test('TLS listeners: https, the port unless 443', () => {
  assert.equal(publicBase({ publicUrl: null, hosts: ['example.com'], plain: [l('0.0.0.0', 80)], tls: [l('0.0.0.0', 443)] }), 'https://example.com');
  assert.equal(publicBase({ publicUrl: null, hosts: ['example.com'], plain: [l('0.0.0.0', 80)], tls: [l('0.0.0.0', 8443)] }), 'https://example.com:8443');
});

test('a configured public_url wins', () => {
  assert.equal(publicBase({ publicUrl: 'https://www.example.com/', hosts: ['example.com'], plain: [l('0.0.0.0', 8080)], tls: [] }), 'https://www.example.com');
});
