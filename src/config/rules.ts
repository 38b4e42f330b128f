// Rules that span more than one value of the config (which the per-value
// schema cannot see): service names, one owner per host, at most one default,
// listeners that can all be bound, a control socket path the OS accepts.
// They read the raw data defensively so they can run even when the schema
// found problems elsewhere, and all problems are reported together.

import { parseListenAddress, listenersClash } from './listen.ts';
import type { Problem } from './problems.ts';
import type { ListenerConfig } from './types.ts';
import { DEFAULT_LISTEN, DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_URL_LENGTH, FRONT_SERVICE_KEYS } from './defaults.ts';
import { maxHeaderSize, maxUrlLength } from './schema.ts';

const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
// sun_path is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH_BYTES = 107;

export function checkRules(data: unknown, controlSocket: string | undefined): Problem[] {
  if (!isObject(data)) return [];
  return [
    ...checkListen(data['listen']),
    ...checkTls(data['listen'], data['tls']),
    ...checkDashboard(data),
    ...checkProxyProtocol(data['listen'], data['proxy'], data['tls']),
    ...checkHeadLimits(data['proxy']),
    ...checkServices(data['services']),
    ...checkSocketPath(data, controlSocket),
  ];
}

/** TLS listeners must not clash with each other or the plain ones; something must provide a certificate. */
function checkTls(plain: unknown, tls: unknown): Problem[] {
  if (!isObject(tls)) return [];
  const problems: Problem[] = [];
  const listen = tls['listen'];
  const texts = Array.isArray(listen) ? listen : listen !== undefined && listen !== null ? [listen] : [];
  const plainTexts = (Array.isArray(plain) ? plain : plain !== undefined && plain !== null ? [plain] : [...DEFAULT_LISTEN]).map(addressOf);
  const seen: Array<{ addr: ListenerConfig; text: string; plain: boolean }> = [];
  for (const text of plainTexts) {
    if (typeof text !== 'string') continue;
    const addr = parseListenAddress(text);
    if (typeof addr !== 'string') seen.push({ addr, text, plain: true });
  }
  texts.forEach((item, i) => {
    const text = addressOf(item);
    if (typeof text !== 'string') return;
    const addr = parseListenAddress(text);
    if (typeof addr === 'string') return;
    const clash = seen.find((s) => listenersClash(s.addr, addr));
    if (clash) {
      const why = clash.plain ? `clashes with the plain listener "${clash.text}"` : clash.text.trim() === text.trim() ? 'is listed twice' : `clashes with "${clash.text}" (same port)`;
      problems.push({ path: Array.isArray(listen) ? ['tls', 'listen', i] : ['tls', 'listen'], message: `address "${text}" ${why}, expected each address once` });
    }
    seen.push({ addr, text, plain: false });
  });
  const certs = tls['certificates'];
  const acme = tls['acme'];
  const hasCerts = Array.isArray(certs) && certs.length > 0;
  if (!hasCerts && !isObject(acme)) {
    problems.push({ path: ['tls'], message: 'no certificate source, expected "certificates" (files) or "acme" (automatic), or both' });
  }
  if (Array.isArray(certs)) {
    let firstDefault: number | undefined;
    certs.forEach((c, i) => {
      if (!isObject(c) || c['default'] !== true) return;
      if (firstDefault === undefined) firstDefault = i;
      else problems.push({ path: ['tls', 'certificates', i, 'default'], message: `certificate ${firstDefault + 1} is already the default, expected at most one default certificate` });
    });
  }
  if (isObject(acme) && plainTexts.length === 0) {
    problems.push({ path: ['tls', 'acme'], message: 'ACME HTTP-01 is answered on the plain listeners, expected at least one address in "listen"' });
  }
  return problems;
}

/** The address of a listener item: the string itself, or a mapping's "address". */
function addressOf(item: unknown): unknown {
  return isObject(item) ? item['address'] : item;
}

function checkListen(listen: unknown): Problem[] {
  if (!Array.isArray(listen)) return [];
  const problems: Problem[] = [];
  const seen: Array<{ addr: ListenerConfig; text: string }> = [];
  listen.forEach((item, i) => {
    const text = addressOf(item);
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

/** The dashboard's listener must not take a port the proxy or the metrics listener binds. */
function checkDashboard(data: Record<string, unknown>): Problem[] {
  const dash = data['dashboard'];
  if (!isObject(dash) || typeof dash['listen'] !== 'string') return [];
  const addr = parseListenAddress(dash['listen'], { allowPortZero: true });
  if (typeof addr === 'string' || addr.port === 0) return [];
  const others = [...(Array.isArray(data['listen']) ? data['listen'] : [data['listen']]).map(addressOf), data['metrics_listen']];
  for (const text of others) {
    if (typeof text !== 'string') continue;
    const other = parseListenAddress(text);
    if (typeof other !== 'string' && listenersClash(addr, other)) {
      return [{ path: ['dashboard', 'listen'], message: `address "${dash['listen']}" clashes with "${text}" (same port), expected a port of its own` }];
    }
  }
  return [];
}

/** Listener items that ask for the PROXY protocol, with their paths. */
function proxyProtocolItems(listen: unknown, at: PropertyKey[]): PropertyKey[][] {
  const items: Array<[unknown, PropertyKey[]]> = Array.isArray(listen) ? listen.map((v, i) => [v, [...at, i]]) : [[listen, at]];
  return items.filter(([item]) => isObject(item) && item['proxy_protocol'] === true).map(([, path]) => [...path, 'proxy_protocol']);
}

/**
 * The PROXY protocol is accepted only from trusted proxies: a listener that
 * requires it (plain or TLS) needs some.
 */
function checkProxyProtocol(listen: unknown, proxy: unknown, tls: unknown): Problem[] {
  const trusted = isObject(proxy) ? proxy['trusted_proxies'] : undefined;
  if (Array.isArray(trusted) && trusted.length > 0) return [];
  const items = [...proxyProtocolItems(listen, ['listen']), ...(isObject(tls) ? proxyProtocolItems(tls['listen'], ['tls', 'listen']) : [])];
  return items.map((path) => ({ path, message: 'the PROXY protocol is accepted only from trusted proxies, expected proxy.trusted_proxies to list the balancers that send it' }));
}

/** A URL limit at or above the head's size could never answer 414: the parser counts the URL in the head (431 first). */
function checkHeadLimits(proxy: unknown): Problem[] {
  if (!isObject(proxy)) return [];
  const url = proxy['max_url_length'] === undefined ? DEFAULT_MAX_URL_LENGTH : maxUrlLength.safeParse(proxy['max_url_length']).data;
  const head = proxy['max_header_size'] === undefined ? DEFAULT_MAX_HEADER_SIZE : maxHeaderSize.safeParse(proxy['max_header_size']).data;
  // Values the schema refuses are reported there.
  if (typeof url !== 'number' || typeof head !== 'number' || url < head) return [];
  const key = proxy['max_url_length'] === undefined ? 'max_header_size' : 'max_url_length';
  return [{ path: ['proxy', key], message: `max_url_length (${url} bytes) must be below max_header_size (${head} bytes): the parser counts the URL in the head, so a longer URL gets 431 before max_url_length can answer 414` }];
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
    problems.push(...checkServiceKind(name, service));
    if (service['group'] !== undefined && service['user'] === undefined) {
      problems.push({ path: ['services', name, 'group'], message: 'a group without a user, expected "user:" too (the group applies to that user\'s processes)' });
    }
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

/**
 * A service either runs a command (baton supervises its processes) or has
 * targets (other hosts' listeners: baton is the front balancer), never both;
 * a front service refuses the settings about processes rather than ignore them.
 */
function checkServiceKind(name: string, service: Record<string, unknown>): Problem[] {
  const at = (...path: PropertyKey[]): PropertyKey[] => ['services', name, ...path];
  const targets = service['targets'];
  if (targets === undefined) {
    return service['command'] === undefined ? [{ path: at('command'), message: 'missing, expected a command line such as "node server.js"' }] : [];
  }
  if (service['command'] !== undefined) {
    return [{ path: at('targets'), message: 'a service runs a command or balances targets (other hosts), not both: remove "command" or "targets"' }];
  }
  const problems: Problem[] = [];
  for (const key of Object.keys(service)) {
    if (!(FRONT_SERVICE_KEYS as readonly string[]).includes(key) && key !== 'command') {
      problems.push({ path: at(key), message: `not used by a front service (one with "targets": baton runs no process for it), expected only ${FRONT_SERVICE_KEYS.join(', ')}` });
    }
  }
  const health = service['health'];
  if (isObject(health) && health['start_timeout'] !== undefined) {
    problems.push({ path: at('health', 'start_timeout'), message: 'not used by a front service (its targets are not started by baton), remove it' });
  }
  if (!isObject(targets)) return problems;
  const names = Object.keys(targets);
  if (names.length === 0) problems.push({ path: at('targets'), message: 'no targets, expected at least one "name: host:port"' });
  const seen = new Map<string, string>();
  for (const t of names) {
    if (!SERVICE_NAME.test(t)) {
      problems.push({ path: at('targets', t), message: 'invalid target name, expected lowercase letters, digits, "_" and "-", starting with a letter or digit, at most 63 characters' });
    }
    const item = targets[t];
    const address = isObject(item) ? item['address'] : item;
    if (typeof address !== 'string') continue;
    const parsed = parseListenAddress(address);
    if (typeof parsed === 'string') continue;
    const key = `${parsed.host}:${parsed.port}`;
    const other = seen.get(key);
    if (other !== undefined) problems.push({ path: at('targets', t), message: `address "${address}" is already target "${other}", expected each host:port once` });
    else seen.set(key, t);
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
