// The shape of baton.yaml as zod schemas: strict objects (unknown keys are
// errors) whose leaves check and convert one value each (durations to ms, host
// names to lowercase). Every message says what is expected. Defaults are not
// filled here but in normalise.ts, from defaults.ts. An empty section
// (`health:` with every line commented out) reads as null and means "defaults".

import { z } from 'zod';
import { isIP } from 'node:net';
import { ACME_CHALLENGES, BALANCE_POLICIES, LOG_LEVELS, MAX_INSTANCES, MAX_TARGET_WEIGHT, STOP_SIGNALS, STRATEGIES } from './defaults.ts';
import { describeValue } from './describe.ts';
import { MAX_DURATION_MS, parseDuration } from './duration.ts';
import { isHostName } from './hostname.ts';
import { lookupGroup, lookupUser } from './accounts.ts';
import { parseListenAddress } from './listen.ts';
import type { ListenerConfig } from './types.ts';

/** A leaf parser's refusal, with a message more precise than "expected X, got Y". */
export class Invalid {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

type Parse<T> = (value: unknown) => T | Invalid | undefined;

/**
 * A required value checked and converted by `parse` (undefined = not valid).
 * Built on z.custom so that a missing key gets our message too.
 */
export function leaf<T>(expected: string, parse: Parse<T>) {
  return z
    .custom<unknown>((v) => v !== undefined, { error: `missing, expected ${expected}` })
    .transform((value, ctx): T => {
      const result = parse(value);
      if (result === undefined || result instanceof Invalid) {
        const message = result instanceof Invalid ? result.message : `expected ${expected}, got ${describeValue(value)}`;
        ctx.issues.push({ code: 'custom', message, input: value });
        return z.NEVER;
      }
      return result;
    });
}

export function mapping<S extends z.core.$ZodLooseShape>(what: string, shape: S) {
  return z.strictObject(shape, { error: (iss) => `expected ${what}, got ${describeValue(iss.input)}` });
}

export function duration(opts: { positive: boolean }) {
  const expected = opts.positive ? 'a duration like "2s" or "500ms" (more than 0)' : 'a duration like "2s" or "500ms"';
  return leaf(expected, (v) => {
    const ms = parseDuration(v);
    if (ms === undefined) return undefined;
    if (ms > MAX_DURATION_MS) return new Invalid(`expected a duration of at most 596h, got ${describeValue(v)}`);
    if (opts.positive && ms === 0) return new Invalid(`expected a duration of more than 0, got ${describeValue(v)}`);
    return ms;
  });
}

export function integer(min: number, max: number) {
  return leaf(`an integer from ${min} to ${max}`, (v) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : undefined,
  );
}

export function oneOf<T extends string>(values: readonly T[]) {
  const list = values.map((v) => `"${v}"`).join(', ');
  return leaf(`one of ${list}`, (v) => (values as readonly unknown[]).includes(v) ? (v as T) : undefined);
}

export function text(expected: string, valid: (s: string) => boolean = (s) => s.trim() !== '') {
  return leaf(expected, (v) => (typeof v === 'string' && valid(v) ? v : undefined));
}

export const bool = leaf('true or false', (v) => (typeof v === 'boolean' ? v : undefined));

const host = leaf('a host name like "example.com"', (v) => {
  if (typeof v !== 'string') return undefined;
  const name = v.trim().toLowerCase();
  if (/:\d+$/.test(name)) return new Invalid(`expected a host name without a port, got ${describeValue(v)}`);
  return isHostName(name) ? name : undefined;
});

export function list<T extends z.ZodType>(what: string, item: T) {
  return z.array(item, { error: (iss) => `expected a list of ${what}, got ${describeValue(iss.input)}` });
}

const LISTEN_EXPECTED = 'an address "host:port" such as "127.0.0.1:8080" (or a mapping with "address"), or a list of them';

/** An address "host:port" (IPv6 as "[::1]:8080"). */
const listenAddress = leaf('an address "host:port" such as "127.0.0.1:8080"', (v) => {
  if (typeof v !== 'string') return undefined;
  const parsed = parseListenAddress(v);
  return typeof parsed === 'string' ? new Invalid(`${parsed}, got ${describeValue(v)}`) : parsed;
});

/** A listener written as a mapping, for the settings a bare address cannot carry. */
export const listenerSchema = mapping('a listener: an address "host:port" or a mapping with "address"', {
  address: listenAddress,
  proxy_protocol: leaf('true or false', (v) => (typeof v === 'boolean' ? v : undefined)).optional(),
});

/** One listener (address or mapping) or a list; problems in a list are reported at the item. */
const listen = z
  .custom<unknown>((v) => v !== undefined, { error: `missing, expected ${LISTEN_EXPECTED}` })
  .transform((value, ctx): ListenerConfig[] => {
    const items: Array<[unknown, PropertyKey[]]> = Array.isArray(value)
      ? value.map((v, i) => [v, [i]])
      : [[value, []]];
    if (Array.isArray(value) && value.length === 0) {
      ctx.issues.push({ code: 'custom', message: `expected at least one address, got an empty list`, input: value });
      return z.NEVER;
    }
    const out: ListenerConfig[] = [];
    for (const [v, path] of items) {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const r = listenerSchema.safeParse(v);
        if (!r.success) {
          for (const issue of r.error.issues) ctx.issues.push({ ...issue, path: [...path, ...issue.path] } as never);
        } else {
          out.push(r.data.proxy_protocol === true ? { ...r.data.address, proxyProtocol: true } : r.data.address);
        }
        continue;
      }
      const parsed = typeof v === 'string' ? parseListenAddress(v) : `expected ${LISTEN_EXPECTED}, got ${describeValue(v)}`;
      if (typeof parsed === 'string') {
        const message = typeof v === 'string' ? `${parsed}, got ${describeValue(v)}` : parsed;
        ctx.issues.push({ code: 'custom', message, input: v, path });
      } else {
        out.push(parsed);
      }
    }
    return out;
  });

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Set by baton for every instance (src/supervisor/instance.ts) and for every
// hook (src/deploy/prepare.ts, deployer.ts): a config value would be
// overwritten. Other BATON_ names are kept free for baton's future use.
// test/unit/config-env-names.test.ts checks these lists against the code.
export const INSTANCE_ENV: readonly string[] = ['PORT', 'BATON_SERVICE', 'BATON_RELEASE', 'BATON_INSTANCE'];
export const HOOK_ENV: readonly string[] = ['BATON_SERVICE', 'BATON_RELEASE', 'BATON_RELEASE_DIR', 'BATON_PREVIOUS_RELEASE', 'BATON_DEPLOYMENT', 'BATON_HOOK', 'BATON_PREVIEW_URL'];
const RESERVED_PREFIX = 'BATON_';

/** Why a variable name cannot be set in `env:`, or null when it can. */
export function reservedEnvReason(name: string): string | null {
  if (INSTANCE_ENV.includes(name)) return `${name} is set by baton for each instance, remove it`;
  if (HOOK_ENV.includes(name)) return `${name} is set by baton for each hook, remove it`;
  if (name.startsWith(RESERVED_PREFIX)) return `names starting with ${RESERVED_PREFIX} are reserved for baton, choose another name`;
  return null;
}

/** Environment variables; numbers and booleans are accepted and stringified. */
const env = z
  .custom<unknown>((v) => v !== undefined)
  .transform((value, ctx): Record<string, string> => {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      ctx.issues.push({ code: 'custom', message: `expected a mapping of variable names to values, got ${describeValue(value)}`, input: value });
      return z.NEVER;
    }
    const out: Record<string, string> = {};
    for (const [name, v] of Object.entries(value)) {
      if (!ENV_NAME.test(name)) {
        ctx.issues.push({ code: 'custom', message: 'invalid variable name, expected letters, digits and "_", not starting with a digit', input: name, path: [name] });
      } else if (reservedEnvReason(name) !== null) {
        ctx.issues.push({ code: 'custom', message: reservedEnvReason(name)!, input: name, path: [name] });
      } else if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
        out[name] = String(v);
      } else {
        ctx.issues.push({ code: 'custom', message: `expected a string, number or boolean, got ${describeValue(v)}`, input: v, path: [name] });
      }
    }
    return out;
  });

export const healthSchema = mapping('a mapping of health check settings', {
  path: text('a path starting with "/"', (s) => s.startsWith('/') && !/\s/.test(s)).optional(),
  interval: duration({ positive: true }).optional(),
  timeout: duration({ positive: true }).optional(),
  healthy_threshold: integer(1, 100).optional(),
  unhealthy_threshold: integer(1, 100).optional(),
  start_timeout: duration({ positive: true }).optional(),
});

export const upstreamSchema = mapping('a mapping of upstream connection settings', {
  keepalive_timeout: duration({ positive: true }).optional(),
  connect_timeout: duration({ positive: true }).optional(),
  response_timeout: duration({ positive: true }).optional(),
});

/** A git remote: a local path, or any URL git understands (ssh, https, file). */
export const gitSchema = mapping('a mapping with the git repository and branch', {
  repo: text('a repository path or URL such as "git@example.com:me/app.git"'),
  branch: text('a branch name such as "main"', (s) => /^[A-Za-z0-9._/-]+$/.test(s) && !s.startsWith('-') && !s.includes('..')).optional(),
});

const HOOK_EXPECTED = 'a command line, or a mapping with "command" and "timeout"';

/** A hook: a command line, or { command, timeout }. */
const hook = z
  .custom<unknown>((v) => v !== undefined)
  .transform((value, ctx): { command: string; timeout?: number } => {
    if (typeof value === 'string') {
      if (value.trim() === '') {
        ctx.issues.push({ code: 'custom', message: `expected ${HOOK_EXPECTED}, got an empty string`, input: value });
        return z.NEVER;
      }
      return { command: value };
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      ctx.issues.push({ code: 'custom', message: `expected ${HOOK_EXPECTED}, got ${describeValue(value)}`, input: value });
      return z.NEVER;
    }
    const parsed = hookMapping.safeParse(value);
    if (!parsed.success) {
      for (const iss of parsed.error.issues) ctx.issues.push({ ...iss, input: value } as never);
      return z.NEVER;
    }
    return parsed.data;
  });

export const hookMapping = mapping('a hook mapping', {
  command: text('a command line such as "npm ci"'),
  timeout: duration({ positive: true }).optional(),
});

export const hooksSchema = mapping('a mapping of hooks (build, migrate, smoke, after_switch)', {
  build: hook.optional(),
  migrate: hook.optional(),
  smoke: hook.optional(),
  after_switch: hook.optional(),
});

/** A path inside the release: relative, no "..", no leading "/". */
const sharedPath = leaf('a path relative to the release directory, such as ".env" or "public/uploads"', (v) => {
  if (typeof v !== 'string') return undefined;
  const p = v.trim().replace(/\/+$/, '');
  if (p === '' || p.startsWith('/') || p.split('/').some((seg) => seg === '..' || seg === '.' || seg === '')) return undefined;
  return p;
});

/** A client network in CIDR form (or a single address). */
const network = leaf('a network like "10.0.0.0/8", "2001:db8::/32" or an address', (v) => {
  if (typeof v !== 'string') return undefined;
  const [addr, bits, ...rest] = v.trim().split('/');
  if (rest.length || !addr) return undefined;
  const family = isIP(addr);
  if (family === 0) return undefined;
  if (bits === undefined) return `${addr}/${family === 4 ? 32 : 128}`;
  const n = Number(bits);
  if (!/^\d+$/.test(bits) || n > (family === 4 ? 32 : 128)) return new Invalid(`expected a prefix length of 0-${family === 4 ? 32 : 128}, got ${describeValue(v)}`);
  return `${addr}/${n}`;
});

const CANARY_STEP_EXPECTED = 'a step: "weight: 10", "pause: 30s", "pause: promote" or "analysis: 1m"';

/** One canary step: { weight: N } | { pause: duration | "promote" } | { analysis: duration | true }. */
const canaryStep = z
  .custom<unknown>((v) => v !== undefined)
  .transform((value, ctx): CanaryStepRaw => {
    const bad = (message: string, path: PropertyKey[] = []): never => {
      ctx.issues.push({ code: 'custom', message, input: value, path });
      return z.NEVER as never;
    };
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return bad(`expected ${CANARY_STEP_EXPECTED}, got ${describeValue(value)}`);
    const keys = Object.keys(value);
    if (keys.length !== 1) return bad(`expected ${CANARY_STEP_EXPECTED} (one key per step), got ${keys.length ? keys.join(', ') : 'nothing'}`);
    const key = keys[0]!;
    const v = (value as Record<string, unknown>)[key];
    if (key === 'weight') {
      if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 100) return { weight: v };
      return bad(`expected a percentage from 0 to 100, got ${describeValue(v)}`, ['weight']);
    }
    if (key === 'pause') {
      if (v === 'promote' || v === 'until_promoted') return { pauseUntilPromoted: true };
      const ms = parseDuration(v);
      if (ms !== undefined && ms > 0 && ms <= MAX_DURATION_MS) return { pauseMs: ms };
      return bad(`expected a duration like "30s", or "promote" to wait for \`baton promote\`, got ${describeValue(v)}`, ['pause']);
    }
    if (key === 'analysis') {
      if (v === true || v === null) return { analysisMs: null };
      const ms = parseDuration(v);
      if (ms !== undefined && ms > 0 && ms <= MAX_DURATION_MS) return { analysisMs: ms };
      return bad(`expected the analysis window as a duration like "1m", or true for the configured window, got ${describeValue(v)}`, ['analysis']);
    }
    return bad(`unknown step "${key}", expected ${CANARY_STEP_EXPECTED}`, [key]);
  });

export type CanaryStepRaw = { weight: number } | { pauseMs: number } | { pauseUntilPromoted: true } | { analysisMs: number | null };

const ratio = leaf('a fraction from 0 to 1, like 0.01 for 1%', (v) => (typeof v === 'number' && v >= 0 && v <= 1 ? v : undefined));
const positiveNumber = leaf('a number greater than 0', (v) => (typeof v === 'number' && v > 0 && Number.isFinite(v) ? v : undefined));

export const analysisSchema = mapping('a mapping of analysis settings', {
  window: duration({ positive: true }).optional(),
  min_requests: integer(1, 10_000_000).optional(),
  max_error_rate: ratio.optional(),
  max_connection_error_rate: ratio.optional(),
  max_p99_ratio: positiveNumber.optional(),
  p99_floor: duration({ positive: false }).optional(),
  check: hook.optional(),
});

const STICKY_KEY_EXPECTED = '"random", "client_address" or "header:NAME"';
const stickyKey = leaf(STICKY_KEY_EXPECTED, (v) => {
  if (v === 'random' || v === 'client_address') return v;
  if (typeof v === 'string' && /^header:[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(v)) return v;
  return undefined;
});
const cookieName = text('a cookie name (letters, digits, "_" and "-")', (s) => /^[A-Za-z0-9_-]{1,64}$/.test(s));

export const stickySchema = mapping('a mapping of sticky-session settings', {
  cookie: cookieName.optional(),
  key: stickyKey.optional(),
});

export const betaSchema = mapping('a mapping of beta-tester rules', {
  cookie: cookieName.optional(),
  header: text('a header and value like "X-Baton-Release: canary"', (s) => /^[A-Za-z0-9!#$%&'*+.^_`|~-]+:\s*\S.*$/.test(s)).optional(),
  networks: list('networks', network).optional(),
});

export const canarySchema = mapping('a mapping of canary settings', {
  steps: z.array(canaryStep, { error: (iss) => `expected a list of steps, got ${describeValue(iss.input)}` }).optional(),
  analysis: analysisSchema.nullish(),
  sticky: stickySchema.nullish(),
  beta: betaSchema.nullish(),
});

export const maintenanceSchema = mapping('a mapping of maintenance-mode settings', {
  page: text('the path of an HTML file').optional(),
  retry_after: duration({ positive: false }).optional(),
  allow: list('networks', network).optional(),
});

export const limitsSchema = mapping('a mapping of request limits', {
  max_body_size: byteSize(1).optional(),
  max_inflight: integer(1, 1_000_000).optional(),
  max_queued: integer(0, 100_000).optional(),
  queue_timeout: duration({ positive: true }).optional(),
});

export const pauseSchema = mapping('a mapping of pause settings', {
  max_queued: integer(1, 100_000).optional(),
  max_wait: duration({ positive: true }).optional(),
});

/** A user of this host, by name or uid, resolved to its ids. */
const user = leaf('a user name of this host', (v) => {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined;
  return lookupUser(String(v)) ?? new Invalid(`no user ${describeValue(v)} on this host, expected an existing user (create it with useradd)`);
});

/** A group of this host, by name or gid, resolved to its id. */
const group = leaf('a group name of this host', (v) => {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined;
  return lookupGroup(String(v)) ?? new Invalid(`no group ${describeValue(v)} on this host, expected an existing group (create it with groupadd)`);
});

/** Permission bits of the control socket, written as octal: 0660 or "0660". */
const socketMode = leaf('a socket mode like "0660"', (v) => {
  if (typeof v !== 'string' && typeof v !== 'number') return undefined;
  const t = String(v).trim();
  if (!/^0?[0-7]{3}$/.test(t)) return undefined;
  const mode = parseInt(t, 8);
  if ((mode & 0o600) !== 0o600) return new Invalid(`expected a mode that lets the daemon's own user read and write (0600 at least), got ${describeValue(v)}`);
  if (mode & 0o111) return new Invalid(`expected a mode without execute bits (a socket is not run), got ${describeValue(v)}`);
  return mode;
});

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, m: 1024 ** 2, mb: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3 };

function sizeText(bytes: number): string {
  for (const [unit, n] of [['GB', 1024 ** 3], ['MB', 1024 ** 2], ['KB', 1024]] as const) if (bytes % n === 0) return `${bytes / n}${unit}`;
  return bytes === 1 ? '1 byte' : `${bytes} bytes`;
}

/** A size in bytes from `min` to `max`: 10MB, 512KB, 1G, or a plain number of bytes (binary units). */
export function byteSize(min: number, max: number = Number.MAX_SAFE_INTEGER) {
  return leaf('a size like "10MB" or "512KB"', (v) => {
    const m = typeof v === 'number' ? [String(v), String(v), ''] : typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v) : null;
    const unit = SIZE_UNITS[(m?.[2] ?? '').toLowerCase()];
    if (!m || unit === undefined) return undefined;
    const bytes = Math.round(Number(m[1]) * unit);
    if (bytes < min) return new Invalid(`expected a size of at least ${sizeText(min)}, got ${describeValue(v)}`);
    if (bytes > max) return new Invalid(`expected a size of at most ${sizeText(max)}, got ${describeValue(v)}`);
    return bytes;
  });
}

const size = byteSize(4096);
/** proxy.max_header_size and max_url_length (rules.ts compares the two). */
export const maxHeaderSize = byteSize(1024, 1024 * 1024);
export const maxUrlLength = byteSize(64, 1024 * 1024);

/** An absolute http(s) URL without query or fragment: where visitors reach a service. */
const publicUrl = leaf('an http:// or https:// URL like "https://example.com"', (v) => {
  if (typeof v !== 'string') return undefined;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return undefined;
  if (u.search || u.hash || u.username) return new Invalid(`expected a URL without query, fragment or credentials, got ${describeValue(v)}`);
  return u.href.replace(/\/+$/, '');
});

export const logsSchema = mapping('a mapping of instance log settings', {
  max_size: size.optional(),
  keep: integer(0, 100).optional(),
});

/** The control API over TCP: only with TLS and a token (there is no plain-HTTP form). */
export const remoteControlSchema = mapping('a mapping with "listen", "cert", "key" and "token_file"', {
  listen: listenAddress,
  cert: text('the path of a PEM certificate chain file'),
  key: text('the path of a PEM private key file'),
  token_file: text('the path of a file holding the token (mode 0600)'),
});

export const controlSchema = mapping('a mapping of control socket settings', {
  group: group.optional(),
  mode: socketMode.optional(),
  remote: remoteControlSchema.nullish(),
});

const TARGET_EXPECTED = 'an address "host:port" such as "10.0.0.11:80" (or a mapping with "address")';

/** A target written as a mapping, for what a bare address cannot carry (HAProxy's `server … weight … agent-port`). */
export const targetSchema = mapping('a target: an address "host:port" or a mapping with "address"', {
  address: listenAddress,
  weight: integer(1, MAX_TARGET_WEIGHT).optional(),
  agent: listenAddress.optional(),
});

export type RawTarget = z.output<typeof targetSchema>;

/** One target of a front service: "host:port", or { address, weight, agent }; problems are reported at the item. */
const target = z
  .custom<unknown>((v) => v !== undefined)
  .transform((value, ctx): RawTarget => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const r = targetSchema.safeParse(value);
      if (r.success) return r.data;
      for (const issue of r.error.issues) ctx.issues.push(issue as never);
      return z.NEVER;
    }
    const parsed = typeof value === 'string' ? parseListenAddress(value) : `expected ${TARGET_EXPECTED}, got ${describeValue(value)}`;
    if (typeof parsed === 'string') {
      ctx.issues.push({ code: 'custom', message: typeof value === 'string' ? `${parsed}, got ${describeValue(value)}` : parsed, input: value });
      return z.NEVER;
    }
    return { address: parsed };
  });

const targets = z.record(z.string(), target, {
  error: (iss) => `expected a mapping of target names to addresses such as { web1: "10.0.0.11:80" }, got ${describeValue(iss.input)}`,
});

export const serviceSchema = mapping('a mapping of service settings', {
  hosts: list('host names', host).optional(),
  default: bool.optional(),
  // Required unless the service has `targets` (src/config/rules.ts says so, at this key).
  command: text('a command line such as "node server.js"').optional(),
  targets: targets.optional(),
  env: env.nullish(),
  user: user.optional(),
  group: group.optional(),
  logs: logsSchema.nullish(),
  public_url: publicUrl.optional(),
  instances: integer(1, MAX_INSTANCES).optional(),
  health: healthSchema.nullish(),
  drain_timeout: duration({ positive: false }).optional(),
  ws_close_spread: duration({ positive: false }).optional(),
  stop_signal: oneOf(STOP_SIGNALS).optional(),
  stop_timeout: duration({ positive: false }).optional(),
  standby: duration({ positive: false }).optional(),
  balance: oneOf(BALANCE_POLICIES).optional(),
  keep_releases: integer(0, 1000).optional(),
  upstream: upstreamSchema.nullish(),
  git: gitSchema.nullish(),
  shared: list('paths relative to the release directory', sharedPath).optional(),
  hooks: hooksSchema.nullish(),
  strategy: oneOf(STRATEGIES).optional(),
  canary: canarySchema.nullish(),
  maintenance: maintenanceSchema.nullish(),
  pause: pauseSchema.nullish(),
  limits: limitsSchema.nullish(),
});

/** proxy.access_log as a mapping: the file and its rotation (as an instance log's `logs:`). */
export const accessLogSchema = mapping('a mapping with "path" (and "max_size", "keep")', {
  path: text('a file path, or "stdout"'),
  max_size: size.optional(),
  keep: integer(0, 100).optional(),
});

export type RawAccessLog = z.output<typeof accessLogSchema>;

const ACCESS_LOG_EXPECTED = 'a file path, "stdout", or a mapping with "path", "max_size" and "keep"';

/** proxy.access_log: "stdout", a file path, or { path, max_size, keep }; problems are reported at the key. */
const accessLog = z
  .custom<unknown>((v) => v !== undefined)
  .transform((value, ctx): RawAccessLog => {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const r = accessLogSchema.safeParse(value);
      if (r.success) return r.data;
      for (const issue of r.error.issues) ctx.issues.push(issue as never);
      return z.NEVER;
    }
    if (typeof value === 'string' && value.trim() !== '') return { path: value.trim() };
    ctx.issues.push({ code: 'custom', message: `expected ${ACCESS_LOG_EXPECTED}, got ${describeValue(value)}`, input: value });
    return z.NEVER;
  });

export const proxySchema = mapping('a mapping of proxy settings', {
  client_idle_timeout: duration({ positive: true }).optional(),
  headers_timeout: duration({ positive: true }).optional(),
  trusted_proxies: list('networks', network).optional(),
  max_header_size: maxHeaderSize.optional(),
  max_headers: integer(1, 10_000).optional(),
  max_url_length: maxUrlLength.optional(),
  max_connections_per_client: integer(1, 1_000_000).optional(),
  access_log: accessLog.optional(),
  http1_fast_path: bool.optional(),
  workers: leaf('an integer from 1 to 256, or "auto" (one per core)', (v) =>
    v === 'auto' || (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 256) ? v : undefined,
  ).optional(),
});

/** A certificate's host name: a host name or a wildcard "*.example.com" (one leftmost label). */
const certHost = leaf('a host name like "example.com" or "*.example.com"', (v) => {
  if (typeof v !== 'string') return undefined;
  const name = v.trim().toLowerCase();
  const bare = name.startsWith('*.') ? name.slice(2) : name;
  // A wildcard needs two labels under it: "*.com" would cover a whole top-level domain.
  if (name !== bare && !bare.includes('.')) return undefined;
  return isHostName(bare) ? name : undefined;
});

export const certificateSchema = mapping('a mapping with "hosts", "cert" and "key"', {
  hosts: list('host names', certHost),
  cert: text('the path of a PEM certificate chain file'),
  key: text('the path of a PEM private key file'),
  default: bool.optional(),
});

const DIRECTORY_EXPECTED = 'an https:// URL of an ACME directory';
const acmeDirectory = leaf(DIRECTORY_EXPECTED, (v) => {
  if (typeof v !== 'string') return undefined;
  try {
    const u = new URL(v.trim());
    return u.protocol === 'https:' ? u.href : new Invalid(`expected ${DIRECTORY_EXPECTED} (ACME requires HTTPS), got ${describeValue(v)}`);
  } catch {
    return undefined;
  }
});

/** A duration that may exceed Node's timer limit (it is compared with dates, never given to a timer); "30d" allowed. */
const longDuration = leaf('a duration like "720h" or "30d" (more than 0)', (v) => {
  const days = typeof v === 'string' ? /^\s*(\d+)d\s*$/.exec(v) : null;
  const ms = days ? Number(days[1]) * 86_400_000 : parseDuration(v);
  if (ms === undefined) return undefined;
  if (ms === 0) return new Invalid(`expected a duration of more than 0, got ${describeValue(v)}`);
  return ms;
});

export const acmeSchema = mapping('a mapping of ACME settings', {
  hosts: list('host names', host),
  email: text('an e-mail address like "ops@example.com"', (s) => /^[^\s@]+@[^\s@]+$/.test(s)).optional(),
  directory: acmeDirectory.optional(),
  ca_file: text('the path of a PEM CA certificate file').optional(),
  renew_before: longDuration.optional(),
  challenge: oneOf(ACME_CHALLENGES).optional(),
});

export const tlsSchema = mapping('a mapping of TLS settings', {
  listen,
  certificates: list('certificates', certificateSchema).optional(),
  acme: acmeSchema.nullish(),
  http2: bool.optional(),
  redirect_http: bool.optional(),
  hsts: bool.optional(),
  handshake_timeout: duration({ positive: true }).optional(),
  max_concurrent_streams: integer(1, 10_000).optional(),
  max_connections_per_client: integer(1, 1_000_000).optional(),
});

/** A loopback address: the dashboard speaks plain HTTP, so it is reached from elsewhere through an ssh tunnel. */
const loopbackListen = leaf('a loopback address "host:port" such as "127.0.0.1:9190"', (v) => {
  if (typeof v !== 'string') return undefined;
  const parsed = parseListenAddress(v, { allowPortZero: true });
  if (typeof parsed === 'string') return new Invalid(`${parsed}, got ${describeValue(v)}`);
  const loopback = parsed.host === 'localhost' || parsed.host === '::1' || (isIP(parsed.host) === 4 && parsed.host.startsWith('127.'));
  if (!loopback) {
    return new Invalid(`expected a loopback address such as "127.0.0.1:9190" (the dashboard speaks plain HTTP: reach it from another machine through an ssh tunnel), got ${describeValue(v)}`);
  }
  return parsed;
});

export const dashboardSchema = mapping('a mapping of dashboard settings', {
  listen: loopbackListen,
  session_timeout: duration({ positive: true }).optional(),
});

const services = z.record(z.string(), serviceSchema, {
  error: (iss) => `expected a mapping of service names to their settings, got ${describeValue(iss.input)}`,
});

export const configSchema = mapping('a mapping of settings', {
  listen: listen.optional(),
  state_dir: text('a directory path').optional(),
  control_socket: text('a file path').optional(),
  control: controlSchema.nullish(),
  log_level: oneOf(LOG_LEVELS).optional(),
  metrics_listen: listenAddress.optional(),
  agent_check: listenAddress.optional(),
  proxy: proxySchema.nullish(),
  tls: tlsSchema.nullish(),
  dashboard: dashboardSchema.optional(),
  services: z
    .custom<unknown>((v) => v !== undefined, { error: 'missing, expected a mapping of service names to their settings' })
    .pipe(services),
});

export type RawConfig = z.output<typeof configSchema>;
export type RawService = z.output<typeof serviceSchema>;

/** The keys allowed in the mapping at `path` (for "did you mean"), or none if it is not a known mapping. */
export function knownKeysAt(path: readonly PropertyKey[]): string[] {
  const [first, , third] = path;
  if (path.length === 0) return Object.keys(configSchema.shape);
  if (first === 'proxy' && path.length === 1) return Object.keys(proxySchema.shape);
  if (first === 'proxy' && path.length === 2 && path[1] === 'access_log') return Object.keys(accessLogSchema.shape);
  if (first === 'tls' && path.length === 1) return Object.keys(tlsSchema.shape);
  if (first === 'tls' && path.length === 2 && path[1] === 'acme') return Object.keys(acmeSchema.shape);
  if (first === 'tls' && path.length === 3 && path[1] === 'certificates') return Object.keys(certificateSchema.shape);
  if (first === 'dashboard' && path.length === 1) return Object.keys(dashboardSchema.shape);
  if (first === 'control' && path.length === 1) return Object.keys(controlSchema.shape);
  if (first === 'control' && path.length === 2 && path[1] === 'remote') return Object.keys(remoteControlSchema.shape);
  if (first === 'listen' && path.length <= 2) return Object.keys(listenerSchema.shape);
  if (first === 'services' && path.length === 2) return Object.keys(serviceSchema.shape);
  if (first === 'services' && path.length === 3 && third === 'health') return Object.keys(healthSchema.shape);
  if (first === 'services' && path.length === 4 && third === 'targets') return Object.keys(targetSchema.shape);
  if (first === 'services' && path.length === 3 && third === 'upstream') return Object.keys(upstreamSchema.shape);
  if (first === 'services' && path.length === 3 && third === 'git') return Object.keys(gitSchema.shape);
  if (first === 'services' && path.length === 3 && third === 'hooks') return Object.keys(hooksSchema.shape);
  if (first === 'services' && path.length === 4 && third === 'hooks') return Object.keys(hookMapping.shape);
  if (first === 'services' && path.length === 3 && third === 'canary') return Object.keys(canarySchema.shape);
  if (first === 'services' && path.length === 4 && third === 'canary' && path[3] === 'analysis') return Object.keys(analysisSchema.shape);
  if (first === 'services' && path.length === 4 && third === 'canary' && path[3] === 'sticky') return Object.keys(stickySchema.shape);
  if (first === 'services' && path.length === 4 && third === 'canary' && path[3] === 'beta') return Object.keys(betaSchema.shape);
  if (first === 'services' && path.length === 3 && third === 'maintenance') return Object.keys(maintenanceSchema.shape);
  if (first === 'services' && path.length === 3 && third === 'pause') return Object.keys(pauseSchema.shape);
  if (first === 'services' && path.length === 3 && third === 'limits') return Object.keys(limitsSchema.shape);
  return [];
}
