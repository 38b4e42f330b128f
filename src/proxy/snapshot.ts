// The immutable routing snapshot: Host header → service route → targets. Built from a ProxySpec.

import { Buffer } from 'node:buffer';
import { BatonError } from '../core/errors.ts';
import type { BalancePolicy, UpstreamConfig } from '../config/types.ts';
import type { CanarySpec, MaintenanceSpec, PauseSpec, ProxySpec, RoutingCounters, ServiceCounters, ServiceRouteSpec, UpstreamTarget } from './types.ts';
import type { PickPolicy, Rotation } from './balancer.ts';
import type { TargetState } from './target.ts';
import type { ReleaseStats } from './metrics.ts';
import type { PauseQueue } from './pause-queue.ts';
import { inflightCap, type Admission, type InflightCap } from './admission.ts';
import { AddressMatcher } from './cidr.ts';
import { BUCKETS, hashSeed, isCookieName, signerFor, type Signer } from './sticky.ts';

/** A service's state that outlives snapshots (same object in every snapshot). */
export interface ServiceShared {
  readonly counters: ServiceCounters;
  readonly routing: RoutingCounters;
  readonly rotation: Rotation;
  readonly canaryRotation: Rotation;
  /** Requests held while the service is paused. */
  readonly queue: PauseQueue;
  /** Requests in flight under limits.max_inflight, and those waiting for a slot. */
  readonly admission: Admission;
  /** Metrics of requests that never reached a release. */
  readonly noRelease: ReleaseStats;
}

/** sticky.key, as the hot path reads it. */
export const KEY_RANDOM = 0;
export const KEY_HEADER = 1;
export const KEY_CLIENT_ADDRESS = 2;

/** The canary split of one service, prepared once per snapshot. */
export interface CanaryRoute {
  readonly release: string;
  readonly targets: readonly TargetState[];
  readonly rotation: Rotation;
  /** A bucket below this goes to the canary (weight × 100). */
  readonly threshold: number;
  readonly signer: Signer;
  readonly cookie: string;
  readonly keyKind: number;
  /** Lowercase header name when keyKind is KEY_HEADER. */
  readonly keyHeader: string;
  /** Seed of the key hash (derived from the secret). */
  readonly seed: number;
  /** Lowercase override header name, or null. */
  readonly overrideHeader: string | null;
  readonly overrideValue: string;
  readonly betaCookie: string | null;
  readonly networks: AddressMatcher | null;
}

export interface MaintenanceRoute {
  readonly html: Buffer;
  readonly retryAfter: string;
  readonly allow: AddressMatcher | null;
}

/** One service as the hot path sees it. */
export interface ServiceRoute {
  readonly name: string;
  readonly policy: PickPolicy;
  readonly upstream: UpstreamConfig;
  /** The stable pool. */
  readonly targets: readonly TargetState[];
  /** Shared by every snapshot: counters and the rotation outlive a snapshot. */
  readonly counters: ServiceCounters;
  readonly rotation: Rotation;
  readonly shared: ServiceShared;
  readonly canary: CanaryRoute | null;
  /** Maintenance or pause is on: the request goes through gate checks first. */
  readonly gated: boolean;
  readonly maintenance: MaintenanceRoute | null;
  readonly pause: PauseSpec | null;
  /** Largest request body passed on, in bytes (413 beyond); null = no limit. */
  readonly maxBodyBytes: number | null;
  /** The cap on requests in flight and its queue; null = no cap. */
  readonly inflightCap: InflightCap | null;
}

/** Host header → route memo entries kept per snapshot, so hostile Host values cannot grow memory. */
const HOST_MEMO_LIMIT = 1024;

/** Lowercase host name without port (and without a trailing dot). */
export function normalizeHost(header: string): string {
  let h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const close = h.indexOf(']');
    h = close > 0 ? h.slice(0, close + 1) : h;
  } else {
    const colon = h.lastIndexOf(':');
    if (colon >= 0) h = h.slice(0, colon);
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

export class RoutingSnapshot {
  readonly services: ReadonlyMap<string, ServiceRoute>;
  readonly defaultRoute: ServiceRoute | null;
  readonly #byHost: ReadonlyMap<string, ServiceRoute>;
  // Memo of raw Host header values; a pure cache of route(), safe to share.
  readonly #memo = new Map<string, ServiceRoute | null>();

  constructor(services: Map<string, ServiceRoute>, byHost: Map<string, ServiceRoute>, defaultRoute: ServiceRoute | null) {
    this.services = services;
    this.#byHost = byHost;
    this.defaultRoute = defaultRoute;
  }

  /** The service for a Host header: exact host, else the default service, else null. */
  route(hostHeader: string | undefined): ServiceRoute | null {
    if (hostHeader === undefined) return this.defaultRoute;
    const memo = this.#memo.get(hostHeader);
    if (memo !== undefined) return memo;
    const found = this.#byHost.get(normalizeHost(hostHeader)) ?? this.defaultRoute;
    if (this.#memo.size < HOST_MEMO_LIMIT) this.#memo.set(hostHeader, found);
    return found;
  }
}

export interface SnapshotDeps {
  /** The live state for a target (created or reused by id). */
  target(t: UpstreamTarget, service: string, upstream: UpstreamConfig): TargetState;
  /** The service's state shared across snapshots. */
  shared(service: string): ServiceShared;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function invalid(service: string, message: string): BatonError {
  return new BatonError('CONFIG_INVALID', `service "${service}": ${message}`);
}

/** The parts of a service's spec that are parsed once (CIDR lists, keys); throws CONFIG_INVALID. */
interface Prepared {
  canary: Omit<CanaryRoute, 'targets' | 'rotation'> | null;
  maintenance: MaintenanceRoute | null;
  pause: PauseSpec | null;
  maxBodyBytes: number | null;
  inflightCap: InflightCap | null;
}

function prepareCanary(name: string, c: CanarySpec): Omit<CanaryRoute, 'targets' | 'rotation'> {
  if (typeof c.weight !== 'number' || !Number.isFinite(c.weight) || c.weight < 0 || c.weight > 100) {
    throw invalid(name, `canary weight must be a number from 0 to 100 (got ${String(c.weight)})`);
  }
  const { sticky, overrides } = c;
  if (typeof sticky.secret !== 'string' || sticky.secret === '') throw invalid(name, 'canary sticky.secret must not be empty');
  if (!isCookieName(sticky.cookie)) throw invalid(name, `canary sticky.cookie "${sticky.cookie}" is not a valid cookie name`);
  let keyKind: number;
  let keyHeader = '';
  switch (sticky.key.kind) {
    case 'random':
      keyKind = KEY_RANDOM;
      break;
    case 'client_address':
      keyKind = KEY_CLIENT_ADDRESS;
      break;
    case 'header':
      keyKind = KEY_HEADER;
      if (!TOKEN.test(sticky.key.header)) throw invalid(name, `canary sticky key header "${sticky.key.header}" is not a valid header name`);
      keyHeader = sticky.key.header.toLowerCase();
      break;
    default:
      throw invalid(name, `canary sticky key kind "${(sticky.key as { kind: string }).kind}" is unknown`);
  }
  if (overrides.header !== null && !TOKEN.test(overrides.header.name)) {
    throw invalid(name, `canary override header "${overrides.header.name}" is not a valid header name`);
  }
  if (overrides.betaCookie !== null) {
    if (!isCookieName(overrides.betaCookie)) throw invalid(name, `canary beta cookie "${overrides.betaCookie}" is not a valid cookie name`);
    if (overrides.betaCookie === sticky.cookie) throw invalid(name, 'the canary beta cookie and sticky cookie must have different names');
  }
  return {
    release: c.release,
    threshold: Math.round(c.weight * (BUCKETS / 100)),
    signer: signerFor(sticky.secret),
    cookie: sticky.cookie,
    keyKind,
    keyHeader,
    seed: hashSeed(sticky.secret),
    overrideHeader: overrides.header === null ? null : overrides.header.name.toLowerCase(),
    overrideValue: overrides.header === null ? '' : overrides.header.value,
    betaCookie: overrides.betaCookie,
    networks: overrides.networks.length === 0 ? null : new AddressMatcher(overrides.networks, `service "${name}": canary override network`),
  };
}

function prepareMaintenance(name: string, m: MaintenanceSpec): MaintenanceRoute {
  if (!Number.isInteger(m.retryAfterSeconds) || m.retryAfterSeconds < 0) {
    throw invalid(name, `maintenance retryAfterSeconds must be a whole number of seconds ≥ 0 (got ${String(m.retryAfterSeconds)})`);
  }
  return {
    html: Buffer.from(m.html, 'utf8'),
    retryAfter: String(m.retryAfterSeconds),
    allow: m.allow.length === 0 ? null : new AddressMatcher(m.allow, `service "${name}": maintenance allow`),
  };
}

function preparePause(name: string, p: PauseSpec): PauseSpec {
  if (!Number.isInteger(p.maxQueued) || p.maxQueued < 0) throw invalid(name, `pause maxQueued must be a whole number ≥ 0 (got ${String(p.maxQueued)})`);
  if (!Number.isFinite(p.maxWaitMs) || p.maxWaitMs <= 0) throw invalid(name, `pause maxWaitMs must be > 0 (got ${String(p.maxWaitMs)})`);
  return { maxQueued: p.maxQueued, maxWaitMs: p.maxWaitMs };
}

function prepareBodyLimit(name: string, max: number | null): number | null {
  if (max !== null && (!Number.isSafeInteger(max) || max < 0)) throw invalid(name, `limits maxBodyBytes must be a whole number of bytes ≥ 0 (got ${String(max)})`);
  return max;
}

function prepareCap(name: string, cap: InflightCap | null): InflightCap | null {
  if (cap === null) return null;
  if (!Number.isInteger(cap.maxInflight) || cap.maxInflight < 1) throw invalid(name, `limits maxInflight must be a whole number ≥ 1 (got ${String(cap.maxInflight)})`);
  if (!Number.isInteger(cap.maxQueued) || cap.maxQueued < 0) throw invalid(name, `limits maxQueued must be a whole number ≥ 0 (got ${String(cap.maxQueued)})`);
  if (!Number.isFinite(cap.queueTimeoutMs) || cap.queueTimeoutMs <= 0) throw invalid(name, `limits queueTimeoutMs must be > 0 (got ${String(cap.queueTimeoutMs)})`);
  return cap;
}

function prepare(s: ServiceRouteSpec): Prepared {
  return {
    canary: s.canary == null ? null : prepareCanary(s.name, s.canary),
    maintenance: s.maintenance == null ? null : prepareMaintenance(s.name, s.maintenance),
    pause: s.pause == null ? null : preparePause(s.name, s.pause),
    maxBodyBytes: prepareBodyLimit(s.name, s.limits?.maxBodyBytes ?? null),
    inflightCap: prepareCap(s.name, inflightCap(s.limits)),
  };
}

/** Reject a spec that cannot be routed unambiguously (CONFIG_INVALID); nothing has changed when it throws. */
export function validateSpec(spec: ProxySpec): void {
  const names = new Set<string>();
  const hosts = new Map<string, string>();
  const targetIds = new Map<string, string>();
  let defaultService: string | null = null;
  for (const s of spec.services) {
    if (names.has(s.name)) throw new BatonError('CONFIG_INVALID', `service "${s.name}" appears twice in the routing spec`);
    names.add(s.name);
    if (s.isDefault) {
      if (defaultService !== null) {
        throw new BatonError('CONFIG_INVALID', `services "${defaultService}" and "${s.name}" are both the default service`);
      }
      defaultService = s.name;
    }
    for (const raw of s.hosts) {
      const h = normalizeHost(raw);
      const other = hosts.get(h);
      if (other !== undefined) throw new BatonError('CONFIG_INVALID', `host "${h}" is routed to both "${other}" and "${s.name}"`);
      hosts.set(h, s.name);
    }
    for (const t of [...s.targets, ...(s.canary?.targets ?? [])]) {
      const other = targetIds.get(t.id);
      if (other === s.name) throw new BatonError('CONFIG_INVALID', `target "${t.id}" appears twice in "${s.name}" (stable and canary pools included)`);
      if (other !== undefined) throw new BatonError('CONFIG_INVALID', `target "${t.id}" appears in "${other}" and "${s.name}"`);
      targetIds.set(t.id, s.name);
    }
  }
}

/** The configured policy, in its weighted form when the targets' weights differ. */
function policyOf(balance: BalancePolicy, targets: readonly UpstreamTarget[]): PickPolicy {
  const first = targets[0]?.weight ?? 1;
  if (targets.every((t) => (t.weight ?? 1) === first)) return balance;
  return balance === 'round_robin' ? 'weighted_round_robin' : 'weighted_least_outstanding';
}

/** Validate the spec, then build its snapshot (creating or reusing target states through deps). */
export function buildSnapshot(spec: ProxySpec, deps: SnapshotDeps): RoutingSnapshot {
  validateSpec(spec);
  // Everything that can throw happens before the first target state is made.
  const prepared = spec.services.map(prepare);
  const services = new Map<string, ServiceRoute>();
  const byHost = new Map<string, ServiceRoute>();
  let defaultRoute: ServiceRoute | null = null;
  for (const [i, s] of spec.services.entries()) {
    const p = prepared[i]!;
    const shared = deps.shared(s.name);
    const canary: CanaryRoute | null =
      p.canary === null ? null : { ...p.canary, targets: s.canary!.targets.map((t) => deps.target(t, s.name, s.upstream)), rotation: shared.canaryRotation };
    const route: ServiceRoute = {
      name: s.name,
      policy: policyOf(s.balance, [...s.targets, ...(s.canary?.targets ?? [])]),
      upstream: s.upstream,
      targets: s.targets.map((t) => deps.target(t, s.name, s.upstream)),
      counters: shared.counters,
      rotation: shared.rotation,
      shared,
      canary,
      gated: p.maintenance !== null || p.pause !== null,
      maintenance: p.maintenance,
      pause: p.pause,
      maxBodyBytes: p.maxBodyBytes,
      inflightCap: p.inflightCap,
    };
    services.set(s.name, route);
    for (const h of s.hosts) byHost.set(normalizeHost(h), route);
    if (s.isDefault) defaultRoute = route;
  }
  return new RoutingSnapshot(services, byHost, defaultRoute);
}
