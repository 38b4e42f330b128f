import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Proxy } from '../../src/proxy/index.ts';
import { silentLogger } from '../../src/core/log.ts';
import { isBatonError } from '../../src/core/errors.ts';
import { service, startProxy, startServer, target, withTimeout } from '../fixtures/proxy-harness.ts';

/** Open a raw connection, write `data`, resolve with what came back and when the proxy closed it. */
function exchangeUntilClose(port: number, data: string): Promise<{ got: string; afterMs: number }> {
  const started = Date.now();
  return withTimeout(
    new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1');
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('close', () => resolve({ got, afterMs: Date.now() - started }));
      s.on('error', reject);
      s.write(data);
    }),
    8000,
    'the proxy to close the connection',
  );
}

test('a client that never finishes its headers gets 408 after headersTimeoutMs', async (t) => {
  const a = await startServer(t, (_req, res) => res.end('a'));
  const { proxy, port } = await startProxy(t, { headersTimeoutMs: 400 });
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  const { got, afterMs } = await exchangeUntilClose(port, 'GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ');
  assert.match(got, /^HTTP\/1\.1 408 /);
  assert.ok(afterMs >= 350, `closed after ${afterMs} ms, before the headers timeout`);
});

test('an idle keep-alive client connection is closed after clientIdleTimeoutMs', async (t) => {
  const a = await startServer(t, (_req, res) => res.end('a'));
  const { proxy, port } = await startProxy(t, { clientIdleTimeoutMs: 300 });
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  const { got, afterMs } = await exchangeUntilClose(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(got, /^HTTP\/1\.1 200 OK\r\n/);
  assert.ok(got.endsWith('\r\n\r\na'));
  // Node enforces the advertised timeout plus its keepAliveTimeoutBuffer (1 s), so a
  // client reusing the connection right at the advertised deadline does not race a close.
  assert.ok(afterMs >= 250, `closed after ${afterMs} ms, before the idle timeout`);
});

test('listen() on a port in use fails with LISTEN_FAILED', async (t) => {
  const { port } = await startProxy(t);
  const other = new Proxy({ logger: silentLogger, clientIdleTimeoutMs: 1000, headersTimeoutMs: 1000 });
  t.after(() => other.close());
  await assert.rejects(other.listen([{ host: '127.0.0.1', port }]), (err) => isBatonError(err) && err.code === 'LISTEN_FAILED');
});

test('apply() rejects an inconsistent spec and keeps the previous routing', async (t) => {
  const a = await startServer(t, (_req, res) => res.end('a'));
  const { proxy } = await startProxy(t);
  proxy.apply({ services: [service('s', [target('a', a.port)], { isDefault: true })] });
  const bad = [
    { services: [service('s', []), service('s', [])] },
    { services: [service('s', [], { isDefault: true }), service('t', [], { isDefault: true })] },
    { services: [service('s', [], { hosts: ['x.test'] }), service('t', [], { hosts: ['X.test:80'] })] },
    { services: [service('s', [target('a', a.port)]), service('t', [target('a', a.port)])] },
  ];
  for (const spec of bad) assert.throws(() => proxy.apply(spec), (err) => isBatonError(err) && err.code === 'CONFIG_INVALID');
  assert.deepEqual(proxy.targets().map((s) => [s.id, s.inService]), [['a', true]]);
});
