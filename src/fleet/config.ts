// The fleet file (fleet.yaml): which hosts, how they are reached, which
// services run where, the balancer in front, and the rollout policy. Checked
// like baton.yaml, with the same machinery: every problem at once as
// "FILE:LINE:COL: path.to.key: message", unknown keys refused with a "did you
// mean". Hosts are ssh destinations: anything the operator's ssh config knows.

import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';
import { BatonError, errorMessage } from '../core/errors.ts';
import { detailLines, type Problem } from '../config/problems.ts';
import { suggestKey } from '../config/suggest.ts';
import { describeValue } from '../config/describe.ts';
import { DEFAULT_ANALYSIS_MIN_REQUESTS, DEFAULT_MAX_CONNECTION_ERROR_RATE, DEFAULT_MAX_ERROR_RATE, DEFAULT_MAX_P99_RATIO, DEFAULT_P99_FLOOR_MS } from '../config/defaults.ts';
import { Invalid, bool, duration, integer, leaf, list, mapping, oneOf, text } from '../config/schema.ts';

export const DEFAULT_FLEET_FILE = 'fleet.yaml';

/** A batch size: a number of hosts, or a share of them. */
export type BatchSize = { hosts: number } | { percent: number };

export interface FleetHostConfig {
  /** The name used in output, state and `baton fleet drain NAME`. */
  name: string;
  /** What `ssh` is given: an alias of the ssh config, user@host, … */
  destination: string;
  labels: string[];
  /** Services this host runs; empty = every service of the fleet. */
  services: string[];
  /** Command line that runs baton on the host. */
  baton: string;
  /** The host's baton.yaml (--config), or null for baton's own default. */
  config: string | null;
  /** Where shipped releases are unpacked on the host (relative: to the login directory). */
  artifacts: string;
  /** Free space the artifacts directory must have, in bytes. */
  minFreeBytes: number;
  /** The server's name in the HAProxy backend. */
  server: string;
}

export type BalancerConfig =
  | { type: 'none' }
  | {
      type: 'haproxy';
      /** How a drain is told: each daemon's agent-check answer, or HAProxy's runtime API. */
      via: 'agent' | 'runtime';
      /** ssh destination of the balancer's host (runtime API). */
      host: string | null;
      socket: string | null;
      backend: string;
      /** agent: the host must see no new request for this long (HAProxy polls the agent every agent-inter). */
      quietMs: number;
      drainTimeoutMs: number;
    }
  | { type: 'readiness'; quietMs: number; drainTimeoutMs: number }
  | {
      /** A front baton (a service with `targets`: docs/fleet.md): told with `baton target drain|undrain` on its host. */
      type: 'baton';
      /** ssh destination of the front's host. */
      host: string;
      /** The front service whose targets are the hosts (a host's target name is hosts.NAME.server). */
      service: string;
      /** The command line that runs baton there, and its --config. */
      baton: string;
      config: string | null;
      drainTimeoutMs: number;
    };

export interface RolloutPolicy {
  batch: BatchSize;
  canary: number;
  bakeMs: number;
  /** Longest time a host's deploy (ship excluded) may take before it counts as failed. */
  healthyDeadlineMs: number;
  /** Hosts that may fail before the rollout stops (each failed host is left on its old release). */
  maxFailures: number;
  revert: boolean;
  drain: boolean;
  /** Judge each canary host against the others over its bake (5xx and connection errors); null = off. */
  analysis: FleetAnalysis | null;
}

export interface FleetAnalysis {
  minRequests: number;
  maxErrorRate: number;
  maxConnectionErrorRate: number;
  /** The canary hosts' p99 may be at most this multiple of the other hosts' p99 (or p99FloorMs, whichever is larger). */
  maxP99Ratio: number;
  p99FloorMs: number;
}

export interface FleetServiceConfig {
  /** A local git repository `--ref` exports from (absolute). */
  repo: string | null;
}

export interface FleetConfig {
  file: string;
  name: string;
  ssh: { configFile: string | null; connectTimeoutMs: number; options: string[]; maxParallel: number };
  hosts: FleetHostConfig[];
  services: Record<string, FleetServiceConfig>;
  balancer: BalancerConfig;
  rollout: RolloutPolicy;
  /** The fleet-wide lock, a directory on the first host (relative: to the login directory). */
  lockPath: string;
}

const SIZE = /^(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|K|M|G)?$/i;
const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, KB: 1024, M: 1024 ** 2, MB: 1024 ** 2, G: 1024 ** 3, GB: 1024 ** 3 };
const size = leaf('a size like "500MB" or "2GB"', (v) => {
  if (typeof v === 'number' && v >= 0) return v;
  const m = typeof v === 'string' ? SIZE.exec(v.trim()) : null;
  return m ? Math.round(Number(m[1]) * (UNITS[(m[2] ?? '').toUpperCase()] ?? 1)) : undefined;
});

const batch = leaf('a number of hosts like 2, or a share like "25%"', (v): BatchSize | Invalid | undefined => {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 1 ? { hosts: v } : new Invalid(`expected at least 1 host, got ${describeValue(v)}`);
  if (typeof v !== 'string') return undefined;
  const m = /^(\d+)%$/.exec(v.trim());
  if (m) {
    const p = Number(m[1]);
    return p >= 1 && p <= 100 ? { percent: p } : new Invalid(`expected a share from 1% to 100%, got ${describeValue(v)}`);
  }
  return /^\d+$/.test(v.trim()) && Number(v) >= 1 ? { hosts: Number(v) } : undefined;
});

const NAME = /^[A-Za-z0-9][A-Za-z0-9._@:-]*$/;
const destination = text('an ssh destination such as "web1" or "deploy@10.0.0.5"', (s) => NAME.test(s));
const label = text('a label (letters, digits, ".", "_", "-")', (s) => /^[A-Za-z0-9._-]+$/.test(s));
const serviceName = text('a service name', (s) => /^[A-Za-z0-9._-]+$/.test(s));
const pathText = text('a path');

const hostSettings = {
  labels: list('labels', label).optional(),
  services: list('service names', serviceName).optional(),
  baton: text('the command line that runs baton on the host, such as "baton" or "/usr/local/bin/baton"').optional(),
  config: pathText.optional(),
  artifacts: pathText.optional(),
  min_free: size.optional(),
};

export const hostSchema = mapping('a mapping of host settings', {
  ssh: destination.optional(),
  server: text('the server name in the HAProxy backend').optional(),
  ...hostSettings,
});
export const hostDefaultsSchema = mapping('a mapping of settings every host gets', hostSettings);

export const sshSchema = mapping('a mapping of ssh settings', {
  config: pathText.optional(),
  connect_timeout: duration({ positive: true }).optional(),
  max_parallel: integer(1, 1000).optional(),
  options: list('ssh options like "ProxyJump=bastion"', text('an ssh option "Name=value"', (s) => /^[A-Za-z]+=\S.*$/.test(s))).optional(),
});

export const balancerSchema = mapping('a mapping with the balancer in front of the hosts', {
  type: oneOf(['none', 'haproxy', 'readiness', 'baton'] as const),
  service: text('the name of the front service whose targets are the hosts').optional(),
  baton: text('a command line such as "/usr/local/bin/baton"').optional(),
  config: pathText.optional(),
  via: oneOf(['agent', 'runtime'] as const).optional(),
  host: destination.optional(),
  socket: pathText.optional(),
  backend: text('a backend name').optional(),
  quiet: duration({ positive: true }).optional(),
  drain_timeout: duration({ positive: true }).optional(),
});

const ratio = leaf('a fraction from 0 to 1, like 0.01 for 1%', (v) => (typeof v === 'number' && v >= 0 && v <= 1 ? v : undefined));

export const fleetAnalysisSchema = mapping('a mapping of analysis settings', {
  min_requests: integer(1, 10_000_000).optional(),
  max_error_rate: ratio.optional(),
  max_connection_error_rate: ratio.optional(),
  max_p99_ratio: leaf('a number greater than 0', (v) => (typeof v === 'number' && v > 0 && Number.isFinite(v) ? v : undefined)).optional(),
  p99_floor: duration({ positive: false }).optional(),
});

const analysisValue = z
  .custom<unknown>((v) => v !== undefined)
  .transform((value, ctx): z.output<typeof fleetAnalysisSchema> | null => {
    if (value === true || value === null) return {};
    if (value === false) return null;
    const r = fleetAnalysisSchema.safeParse(value);
    if (!r.success) {
      for (const iss of r.error.issues) ctx.issues.push({ ...iss, input: value } as never);
      return z.NEVER;
    }
    return r.data;
  });

export const rolloutSchema = mapping('a mapping of rollout settings', {
  analysis: analysisValue.optional(),
  batch: batch.optional(),
  canary: integer(0, 1000).optional(),
  bake: duration({ positive: false }).optional(),
  healthy_deadline: duration({ positive: true }).optional(),
  max_failures: integer(0, 100_000).optional(),
  revert: bool.optional(),
  drain: bool.optional(),
});

export const fleetServiceSchema = mapping('a mapping of service settings for the fleet', {
  repo: pathText.optional(),
});

const hostsValue = z
  .custom<unknown>((v) => v !== undefined, { error: 'missing, expected a mapping of hosts (ssh destinations) to their settings, or a list of them' })
  .transform((value, ctx): Array<[string, z.output<typeof hostSchema>]> => {
    if (Array.isArray(value)) {
      const out: Array<[string, z.output<typeof hostSchema>]> = [];
      value.forEach((v, i) => {
        if (typeof v === 'string' && NAME.test(v)) out.push([v, {}]);
        else ctx.issues.push({ code: 'custom', message: `expected an ssh destination such as "web1", got ${describeValue(v)}`, input: v, path: [i] });
      });
      return out;
    }
    if (value === null || typeof value !== 'object') {
      ctx.issues.push({ code: 'custom', message: `expected a mapping of hosts to their settings, got ${describeValue(value)}`, input: value });
      return z.NEVER;
    }
    const out: Array<[string, z.output<typeof hostSchema>]> = [];
    for (const [name, v] of Object.entries(value)) {
      if (!NAME.test(name)) {
        ctx.issues.push({ code: 'custom', message: 'invalid host name, expected letters, digits, ".", "_", "-", "@", ":"', input: name, path: [name] });
        continue;
      }
      const r = hostSchema.safeParse(v ?? {});
      if (!r.success) {
        for (const iss of r.error.issues) ctx.issues.push({ ...iss, path: [name, ...iss.path] } as never);
        continue;
      }
      out.push([name, r.data]);
    }
    if (out.length === 0 && Object.keys(value).length === 0) ctx.issues.push({ code: 'custom', message: 'expected at least one host', input: value });
    return out;
  });

export const fleetSchema = mapping('a mapping of fleet settings', {
  name: text('a fleet name (letters, digits, "_", "-")', (s) => /^[A-Za-z0-9_-]{1,64}$/.test(s)).optional(),
  ssh: sshSchema.nullish(),
  host_defaults: hostDefaultsSchema.nullish(),
  hosts: hostsValue,
  services: z.record(z.string(), fleetServiceSchema.nullish(), { error: (iss) => `expected a mapping of service names to settings, got ${describeValue(iss.input)}` }).optional(),
  balancer: balancerSchema.nullish(),
  rollout: rolloutSchema.nullish(),
  lock: pathText.optional(),
});

function knownKeysAt(p: readonly PropertyKey[]): string[] {
  const [first] = p;
  if (p.length === 0) return Object.keys(fleetSchema.shape);
  if (p.length === 1 && first === 'ssh') return Object.keys(sshSchema.shape);
  if (p.length === 1 && first === 'host_defaults') return Object.keys(hostDefaultsSchema.shape);
  if (p.length === 1 && first === 'balancer') return Object.keys(balancerSchema.shape);
  if (p.length === 1 && first === 'rollout') return Object.keys(rolloutSchema.shape);
  if (p.length === 2 && first === 'hosts') return Object.keys(hostSchema.shape);
  if (p.length === 2 && first === 'services') return Object.keys(fleetServiceSchema.shape);
  if (p.length === 2 && first === 'rollout' && p[1] === 'analysis') return Object.keys(fleetAnalysisSchema.shape);
  return [];
}

function toProblems(issue: z.core.$ZodIssue): Problem[] {
  if (issue.code !== 'unrecognized_keys') return [{ path: issue.path, message: issue.message }];
  const known = knownKeysAt(issue.path);
  return issue.keys.map((key) => {
    const s = suggestKey(key, known);
    return { path: [...issue.path, key], message: `unknown key (${s === undefined ? `expected one of ${known.join(', ')}` : `did you mean "${s}"?`})` };
  });
}

export async function loadFleetConfig(file: string): Promise<FleetConfig> {
  let textIn: string;
  try {
    textIn = await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : errorMessage(err);
    throw new BatonError('CONFIG_UNREADABLE', `${file}: cannot read the fleet file: ${reason}`);
  }
  return parseFleetConfig(textIn, file);
}

export function parseFleetConfig(source: string, file: string): FleetConfig {
  const lines = new LineCounter();
  const doc = parseDocument(source, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const fail = (problems: Problem[]): BatonError =>
    new BatonError('CONFIG_INVALID', `${file}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`, detailLines(problems, file, doc, lines));
  if (doc.errors.length > 0) throw fail(doc.errors.map((e) => ({ path: [], offset: e.pos[0], message: `invalid YAML: ${e.message}` })));
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw fail([{ path: [], offset: 0, message: `invalid YAML: ${errorMessage(err)}` }]);
  }
  if (data === null || data === undefined) throw fail([{ path: [], offset: 0, message: 'the file is empty, expected at least a "hosts" mapping' }]);
  const r = fleetSchema.safeParse(data);
  if (!r.success) throw fail(r.error.issues.flatMap(toProblems));
  const raw = r.data;
  const problems: Problem[] = [];
  const base = path.dirname(path.resolve(file));
  const d = raw.host_defaults ?? {};

  const hosts: FleetHostConfig[] = raw.hosts.map(([name, h]) => ({
    name,
    destination: h.ssh ?? name,
    labels: h.labels ?? d.labels ?? [],
    services: h.services ?? d.services ?? [],
    baton: h.baton ?? d.baton ?? 'baton',
    config: h.config ?? d.config ?? null,
    artifacts: h.artifacts ?? d.artifacts ?? '.cache/baton/artifacts',
    minFreeBytes: h.min_free ?? d.min_free ?? 100 * 1024 ** 2,
    server: h.server ?? name,
  }));

  const b = raw.balancer;
  let balancer: BalancerConfig = { type: 'none' };
  if (b?.type === 'haproxy') {
    const via = b.via ?? 'agent';
    if (via === 'runtime' && !b.socket) problems.push({ path: ['balancer', 'socket'], message: 'missing, expected the path of HAProxy\'s stats socket (level admin) on the balancer\'s host' });
    if (via === 'runtime' && !b.host) problems.push({ path: ['balancer', 'host'], message: 'missing, expected the ssh destination of the balancer\'s host' });
    balancer = { type: 'haproxy', via, host: b.host ?? null, socket: b.socket ?? null, backend: b.backend ?? 'baton', quietMs: b.quiet ?? 2_000, drainTimeoutMs: b.drain_timeout ?? 60_000 };
  } else if (b?.type === 'readiness') {
    balancer = { type: 'readiness', quietMs: b.quiet ?? 5_000, drainTimeoutMs: b.drain_timeout ?? 60_000 };
  } else if (b?.type === 'baton') {
    if (!b.host) problems.push({ path: ['balancer', 'host'], message: 'missing, expected the ssh destination of the front baton\'s host' });
    if (!b.service) problems.push({ path: ['balancer', 'service'], message: 'missing, expected the name of the front service whose targets are the hosts' });
    balancer = { type: 'baton', host: b.host ?? '', service: b.service ?? '', baton: b.baton ?? 'baton', config: b.config ?? null, drainTimeoutMs: b.drain_timeout ?? 60_000 };
  }
  if (b && b.type !== 'haproxy') {
    for (const k of ['via', 'socket', 'backend'] as const) {
      if (b[k] !== undefined) problems.push({ path: ['balancer', k], message: `only for type "haproxy"` });
    }
    if (b.type !== 'baton' && b.host !== undefined) problems.push({ path: ['balancer', 'host'], message: 'only for type "haproxy" or "baton"' });
  }
  if (b && b.type !== 'baton') {
    for (const k of ['service', 'baton', 'config'] as const) {
      if (b[k] !== undefined) problems.push({ path: ['balancer', k], message: 'only for type "baton"' });
    }
  }
  if (b && (b.type === 'none' || b.type === 'baton') && b.quiet !== undefined) {
    problems.push({ path: ['balancer', 'quiet'], message: b.type === 'baton' ? 'not for type "baton": the drain is done when the front has nothing in flight to the host' : 'only for type "haproxy" or "readiness"' });
  }

  const ro = raw.rollout ?? {};
  const rollout: RolloutPolicy = {
    batch: ro.batch ?? { hosts: 1 },
    canary: ro.canary ?? 0,
    bakeMs: ro.bake ?? 0,
    healthyDeadlineMs: ro.healthy_deadline ?? 5 * 60_000,
    maxFailures: ro.max_failures ?? 0,
    revert: ro.revert ?? true,
    drain: ro.drain ?? false,
    analysis: ro.analysis
      ? {
          minRequests: ro.analysis.min_requests ?? DEFAULT_ANALYSIS_MIN_REQUESTS,
          maxErrorRate: ro.analysis.max_error_rate ?? DEFAULT_MAX_ERROR_RATE,
          maxConnectionErrorRate: ro.analysis.max_connection_error_rate ?? DEFAULT_MAX_CONNECTION_ERROR_RATE,
          maxP99Ratio: ro.analysis.max_p99_ratio ?? DEFAULT_MAX_P99_RATIO,
          p99FloorMs: ro.analysis.p99_floor ?? DEFAULT_P99_FLOOR_MS,
        }
      : null,
  };
  if (rollout.canary >= hosts.length && hosts.length > 0 && ro.canary !== undefined) {
    problems.push({ path: ['rollout', 'canary'], message: `expected fewer canary hosts than hosts (${hosts.length})` });
  }
  if (rollout.drain && balancer.type === 'none') problems.push({ path: ['rollout', 'drain'], message: 'needs a balancer (balancer.type "haproxy", "readiness" or "baton") to drain from' });

  const services: Record<string, FleetServiceConfig> = {};
  for (const [name, s] of Object.entries(raw.services ?? {})) services[name] = { repo: s?.repo ? path.resolve(base, s.repo) : null };

  if (problems.length) throw fail(problems);
  return {
    file: path.resolve(file),
    name: raw.name ?? path.basename(file).replace(/\.ya?ml$/, '').replace(/[^A-Za-z0-9_-]/g, '-'),
    ssh: { configFile: raw.ssh?.config ? path.resolve(base, raw.ssh.config.replace(/^~(?=\/)/, os.homedir())) : null, connectTimeoutMs: raw.ssh?.connect_timeout ?? 10_000, options: raw.ssh?.options ?? [], maxParallel: raw.ssh?.max_parallel ?? 10 },
    hosts,
    services,
    balancer,
    rollout,
    lockPath: raw.lock ?? `.baton-fleet-${raw.name ?? 'fleet'}.lock`,
  };
}

/** The hosts that run `service`, in the file's order. */
export function hostsOf(cfg: FleetConfig, service: string): FleetHostConfig[] {
  return cfg.hosts.filter((h) => h.services.length === 0 || h.services.includes(service));
}
