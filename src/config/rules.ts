// Rules that span more than one value of the config (which the per-value
// schema cannot see): service names, one owner per host, at most one default,
// listeners that can all be bound, a control socket path the OS accepts.
// They read the raw data defensively so they can run even when the schema
// found problems elsewhere, and all problems are reported together.

import { parseListenAddress, listenersClash } from './listen.ts';
import type { Problem } from './problems.ts';
import type { ListenerConfig } from './types.ts';

const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
// sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH_BYTES = 107;

export function checkRules(data: unknown, controlSocket: string | undefined): Problem[] {
  if (!isObject(data)) return [];
  return [...checkListen(data['listen']), ...checkServices(data['services']), ...checkSocketPath(data, controlSocket)];
}

function checkListen(listen: unknown): Problem[] {
  if (!Array.isArray(listen)) return [];
  const problems: Problem[] = [];
  const seen: Array<{ addr: ListenerConfig; text: string }> = [];
  listen.forEach((text, i) => {
    if (typeof text !== 'string') return;
    const addr = parseListenAddress(text);
    if (typeof addr === 'string') return;
    const clash = seen.find((s) => listenersClash(s.addr, addr));
    if (clash) {
      const why = clash.text.trim() === text.trim() ? 'listed twice' : `clashes with "${clash.text}" (same port)`;
      problems.push({ path: ['listen', i], message: `address "${text}" ${why}, expected each address once` });
    }
    seen.push({ addr, text });
  });
  return problems;
}

function checkServices(services: unknown): Problem[] {
  if (!isObject(services)) return [];
  const names = Object.keys(services);
  if (names.length === 0) {
    return [{ path: ['services'], message: 'no services, expected at least one service' }];
  }
  const problems: Problem[] = [];
  const hostOwner = new Map<string, string>();
  let firstDefault: string | undefined;
  for (const name of names) {
    if (!SERVICE_NAME.test(name)) {
      problems.push({
        path: ['services', name],
        message: 'invalid service name, expected lowercase letters, digits, "_" and "-", starting with a letter or digit, at most 63 characters',
      });
    }
    const service = services[name];
    if (!isObject(service)) continue;
    if (service['default'] === true) {
      if (firstDefault === undefined) firstDefault = name;
      else problems.push({ path: ['services', name, 'default'], message: `service "${firstDefault}" is already the default, expected at most one default service` });
    }
    const hosts = service['hosts'];
    if (!Array.isArray(hosts)) continue;
    hosts.forEach((h, i) => {
      if (typeof h !== 'string') return;
      const host = h.trim().toLowerCase();
      const owner = hostOwner.get(host);
      if (owner === undefined) hostOwner.set(host, name);
      else {
        const message = owner === name
          ? `host "${host}" is listed twice, expected each host once`
          : `host "${host}" is already claimed by service "${owner}", expected each host in one service only`;
        problems.push({ path: ['services', name, 'hosts', i], message });
      }
    });
  }
  return problems;
}

function checkSocketPath(data: Record<string, unknown>, controlSocket: string | undefined): Problem[] {
  if (controlSocket === undefined || Buffer.byteLength(controlSocket) <= MAX_SOCKET_PATH_BYTES) return [];
  const key = typeof data['control_socket'] === 'string' ? 'control_socket' : 'state_dir';
  return [{
    path: [key],
    message: `the control socket path "${controlSocket}" is ${Buffer.byteLength(controlSocket)} bytes, expected at most ${MAX_SOCKET_PATH_BYTES} (set control_socket to a shorter path)`,
  }];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
