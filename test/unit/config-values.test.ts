// Config value parsers: durations, listen addresses, key suggestions.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration } from '../../src/config/duration.ts';
import { listenersClash, parseListenAddress } from '../../src/config/listen.ts';
import { editDistance, suggestKey } from '../../src/config/suggest.ts';

test('parseDuration', () => {
  const table: Array<[unknown, number | undefined]> = [
    ['500ms', 500], ['2s', 2000], ['1.5s', 1500], ['5m', 300_000], ['1h', 3_600_000], ['1m30s', 90_000],
    [' 2s ', 2000], ['0', 0], ['3', 3000], [3, 3000], [0.25, 250], [0, 0],
    ['fast', undefined], ['', undefined], ['2 s', undefined], ['-1s', undefined], ['1d', undefined],
    ['s', undefined], [-1, undefined], [Infinity, undefined], [null, undefined], [true, undefined],
  ];
  for (const [input, ms] of table) assert.equal(parseDuration(input), ms, `parseDuration(${JSON.stringify(input)})`);
});

test('parseListenAddress', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:8080'), { host: '127.0.0.1', port: 8080 });
  assert.deepEqual(parseListenAddress('[::1]:443'), { host: '::1', port: 443 });
  assert.deepEqual(parseListenAddress('Example.COM:1'), { host: 'example.com', port: 1 });
  assert.deepEqual(parseListenAddress('0.0.0.0:65535'), { host: '0.0.0.0', port: 65535 });
  for (const bad of ['8080', ':8080', '127.0.0.1:0', 'a:65536', '[::1]', '::1:80', 'a b:80', 'x:80a']) {
    assert.equal(typeof parseListenAddress(bad), 'string', bad);
  }
});

test('listenersClash', () => {
  assert.equal(listenersClash({ host: '127.0.0.1', port: 80 }, { host: '127.0.0.1', port: 80 }), true);
  assert.equal(listenersClash({ host: '0.0.0.0', port: 80 }, { host: '127.0.0.1', port: 80 }), true);
  assert.equal(listenersClash({ host: '::', port: 80 }, { host: '10.0.0.1', port: 80 }), true);
  assert.equal(listenersClash({ host: '127.0.0.1', port: 80 }, { host: '10.0.0.1', port: 80 }), false);
  assert.equal(listenersClash({ host: '0.0.0.0', port: 80 }, { host: '0.0.0.0', port: 81 }), false);
});

test('suggestKey', () => {
  const keys = ['command', 'hosts', 'drain_timeout', 'stop_signal', 'health', 'standby'];
  assert.equal(suggestKey('comand', keys), 'command');
  assert.equal(suggestKey('commnad', keys), 'command');
  assert.equal(suggestKey('drainTimeout', keys), 'drain_timeout');
  assert.equal(suggestKey('stop-signal', keys), 'stop_signal');
  assert.equal(suggestKey('drain', keys), 'drain_timeout');
  assert.equal(suggestKey('host', keys), 'hosts');
  assert.equal(suggestKey('xyz', keys), undefined);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('ab', 'ba'), 1);
  assert.equal(editDistance('', 'abc'), 3);
});
