// A test daemon with a TLS listener: the config every TLS test writes, with
// the port held from choice to use (the harness binds the socket and hands it
// to the daemon at its start: TestDaemon.holdPort).

import { writeFile } from 'node:fs/promises';
import type { TestDaemon } from './daemon.ts';

export interface TlsConfigParts {
  /** Top-level lines after `listen`, `metrics_listen` and `state_dir` (e.g. `log_level: debug`). */
  top?: string[];
  /** The `tls:` section's lines after its `listen` (indented by two spaces); a function is called after prepare(). */
  tls: string[] | ((port: number) => string[]);
  /** The `services:` section's body (serviceYaml()). */
  services: string;
  /** Run with the chosen port before the daemon starts (e.g. pebble told to validate on it). */
  prepare?: (port: number) => Promise<void>;
}

/** Writes `d`'s config with a TLS listener on a free port, starts the daemon and returns that port. */
export async function startWithTls(d: TestDaemon, parts: TlsConfigParts): Promise<number> {
  const port = await d.holdPort('tls');
  await parts.prepare?.(port);
  await writeFile(
    d.configFile,
    [
      `listen: ["127.0.0.1:${d.port}"]`,
      ...(d.metricsPort === null ? [] : [`metrics_listen: "127.0.0.1:${d.metricsPort}"`]),
      'state_dir: ./state',
      ...(parts.top ?? []),
      'tls:',
      `  listen: ["127.0.0.1:${port}"]`,
      ...(typeof parts.tls === 'function' ? parts.tls(port) : parts.tls),
      'services:',
      parts.services,
      '',
    ].join('\n'),
  );
  await d.start();
  return port;
}

/** A `tls.certificates` entry, as one flow-style line of that list. */
export function certificateLine(hosts: string[], files: { certFile: string; keyFile: string }): string {
  return `    - { hosts: [${hosts.join(', ')}], cert: ${JSON.stringify(files.certFile)}, key: ${JSON.stringify(files.keyFile)} }`;
}
