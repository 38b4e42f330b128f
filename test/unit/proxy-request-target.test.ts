import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAbsoluteForm } from '../../src/proxy/request-target.ts';

test('parseAbsoluteForm: the authority wins, the rest is forwarded origin-form', () => {
  assert.deepEqual(parseAbsoluteForm('http://evil.example/reset'), { authority: 'evil.example', path: '/reset' });
  assert.deepEqual(parseAbsoluteForm('HTTP://Site.Test:8080/a/b?c=d'), { authority: 'Site.Test:8080', path: '/a/b?c=d' });
  assert.deepEqual(parseAbsoluteForm('https://site.test'), { authority: 'site.test', path: '/' });
  assert.deepEqual(parseAbsoluteForm('http://site.test?q=1'), { authority: 'site.test', path: '/?q=1' });
  assert.deepEqual(parseAbsoluteForm('http://[::1]:81/x'), { authority: '[::1]:81', path: '/x' });
  assert.deepEqual(parseAbsoluteForm('http://203.0.113.9/'), { authority: '203.0.113.9', path: '/' });
});

test('parseAbsoluteForm: what cannot be forwarded is refused', () => {
  for (const bad of ['ftp://site.test/', 'http:///nohost', 'http://user:pw@site.test/', 'http://user@site.test/', 'site.test/x', 'http:/x', 'http://site.test:port/', 'http://[zz]/', 'http://a b/']) {
    assert.equal(parseAbsoluteForm(bad), null, bad);
  }
});
