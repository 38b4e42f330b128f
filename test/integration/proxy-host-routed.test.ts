// The Host the instance sees is the Host the request was routed by, through the
// real proxy: a Connection header naming Host (the counterexample the header
// properties found: the instance got undici's "127.0.0.1:<port>" instead) and a
// request with two Host lines (400, RFC 9112 3.2: the instance sees nothing).

import { test, type TestContext } from 'node:test';
import type http from 'node:http';
import assert from 'node:assert/strict';
import { rawExchange, service, startProxy, startServer, target } from '../fixtures/proxy-harness.ts';

interface Echo {
  port: number;
  /** Requests that reached an instance. */
  hits: () => number;
}

/** Two services by host, each instance answering with its name and the Host lines it got. */
async function echoHosts(t: TestContext): Promise<Echo> {
  const { proxy, port } = await startProxy(t);
  let hits = 0;
  const echo = (name: string): http.RequestListener => (req, res) => {
    hits++;
    const hosts = req.rawHeaders.filter((_, i, raw) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === 'host');
    res.end(`${name} ${JSON.stringify(hosts)}`);
  };
  const upA = await startServer(t, echo('a'));
  const upB = await startServer(t, echo('b'));
  proxy.apply({ services: [service('a', [target('ua', upA.port)], { hosts: ['a.test'] }), service('b', [target('ub', upB.port)], { hosts: ['b.test'], isDefault: true })] });
  return { port, hits: () => hits };
}

function body(response: string): string {
  return response.slice(response.indexOf('\r\n\r\n') + 4);
}

test('a Connection header naming Host does not take Host away from the instance', async (t) => {
  const { port } = await echoHosts(t);
  const got = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close, Host\r\n\r\n');
  assert.match(got, /^HTTP\/1\.1 200 /);
  assert.equal(body(got), 'a ["a.test"]');
  // Absolute-form: the target's authority becomes the Host, and stays.
  const abs = await rawExchange(port, 'GET http://b.test/x HTTP/1.1\r\nHost: a.test\r\nConnection: host, close\r\n\r\n');
  assert.equal(body(abs), 'b ["b.test"]');
});

test('two Host lines: 400, and no instance sees the request', async (t) => {
  const { port, hits } = await echoHosts(t);
  const got = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nConnection: close\r\n\r\n');
  assert.match(got, /^HTTP\/1\.1 400 /);
  assert.equal(hits(), 0);
});
