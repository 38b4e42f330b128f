// The fleet file the tests hand to `baton fleet`: every host of a TestFleet
// with its own baton, config and artifact directory, the test's ssh config,
// and HAProxy (when running) as the balancer, reached over ssh on h1.

import path from 'node:path';
import type { TestFleet } from './fleet-hosts.ts';

export function fleetYaml(f: TestFleet, opts: { rollout?: string; balancer?: 'agent' | 'runtime' | 'readiness' | 'none'; hosts?: number } = {}): string {
  const hosts = f.hosts.slice(0, opts.hosts ?? f.hosts.length);
  const b = opts.balancer ?? (f.haproxy ? 'agent' : 'none');
  const balancer =
    b === 'none' ? '  type: none'
    : b === 'readiness' ? '  type: readiness\n  quiet: 1s\n  drain_timeout: 20s'
    : [`  type: haproxy`, `  via: ${b}`, `  host: h1`, `  socket: ${f.haproxy!.socket}`, `  backend: ${f.haproxy!.backend}`, '  quiet: 1s', '  drain_timeout: 20s'].join('\n');
  return [
    'name: test',
    'ssh:',
    `  config: ${f.sshConfig}`,
    '  connect_timeout: 5s',
    'hosts:',
    ...hosts.flatMap((h) => [
      `  ${h.name}:`,
      `    baton: ${JSON.stringify(h.batonCommand)}`,
      `    config: ${h.configFile}`,
      `    artifacts: ${path.join(h.dir, 'artifacts')}`,
      '    min_free: 1MB',
    ]),
    'balancer:',
    balancer,
    'rollout:',
    ...(opts.rollout ?? 'batch: 2\ncanary: 1\nbake: 1s').split('\n').map((l) => `  ${l}`),
    `lock: ${path.join(f.dir, 'h1', 'fleet.lock')}`,
    '',
  ].join('\n');
}
