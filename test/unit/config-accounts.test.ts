// `user:`/`group:` of a service and the control socket's group/mode: names are
// resolved to ids when the config loads; unknown names are line-numbered errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/index.ts';
import { BatonError } from '../../src/core/errors.ts';

const base = (svc: string, top = ''): string => `${top}services:\n  web:\n    command: exec ./server\n${svc}`;

test('user and group resolve to ids; the control group opens the socket to 0660', () => {
  const cfg = parseConfig(base('    user: root\n    group: 0\n', 'control: { group: root }\n'), '/etc/baton/baton.yaml');
  assert.deepEqual(cfg.services[0]!.runAs, { user: 'root', uid: 0, gid: 0, home: '/root' });
  assert.deepEqual(cfg.control, { gid: 0, group: 'root', mode: 0o660, remote: null });
  assert.deepEqual(parseConfig(base('', 'control: { mode: "0600" }\n'), '/x.yaml').control, { gid: null, group: null, mode: 0o600, remote: null });
  assert.equal(parseConfig(base(''), '/x.yaml').services[0]!.runAs, null);
});

test('unknown users and groups, a group alone and a bad mode are errors at their line', () => {
  const problems = (text: string): string[] => {
    try {
      parseConfig(text, 'baton.yaml');
    } catch (err) {
      assert.ok(err instanceof BatonError);
      return err.details;
    }
    assert.fail('expected a config error');
  };
  assert.deepEqual(problems(base('    user: no-such-user-here\n')), ['baton.yaml:4:5: services.web.user: no user "no-such-user-here" on this host, expected an existing user (create it with useradd)']);
  assert.deepEqual(problems(base('    group: root\n')), ['baton.yaml:4:5: services.web.group: a group without a user, expected "user:" too (the group applies to that user\'s processes)']);
  assert.deepEqual(problems(base('', 'control: { group: no-such-group-here, mode: 0755 }\n')), [
    'baton.yaml:1:12: control.group: no group "no-such-group-here" on this host, expected an existing group (create it with groupadd)',
    'baton.yaml:1:39: control.mode: expected a mode without execute bits (a socket is not run), got 755',
  ]);
});
