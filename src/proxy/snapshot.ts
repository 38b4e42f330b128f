// The immutable routing snapshot: Host header → service route → targets. Built from a ProxySpec.

import { BatonError } from '../core/errors.ts';
import type { BalancePolicy, UpstreamConfig } from '../config/types.ts';
import type { ProxySpec, ServiceCounters, UpstreamTarget } from './types.ts';
import type { Rotation } from './balancer.ts';
import type { TargetState } from './target.ts';

/** One service as the hot path sees it. */
export interface ServiceRoute {
  readonly name: string;
  readonly policy: BalancePolicy;
  readonly upstream: UpstreamConfig;
  readonly targets: readonly TargetState[];
  /** Shared by every snapshot: counters and the rotation outlive a snapshot. */
  readonly counters: ServiceCounters;
  readonly rotation: Rotation;
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
  counters(service: string): ServiceCounters;
  rotation(service: string): Rotation;
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
    for (const t of s.targets) {
      const other = targetIds.get(t.id);
      if (other !== undefined) throw new BatonError('CONFIG_INVALID', `target "${t.id}" appears in "${other}" and "${s.name}"`);
      targetIds.set(t.id, s.name);
    }
  }
}

/** Validate the spec, then build its snapshot (creating or reusing target states through deps). */
export function buildSnapshot(spec: ProxySpec, deps: SnapshotDeps): RoutingSnapshot {
  validateSpec(spec);
  const services = new Map<string, ServiceRoute>();
  const byHost = new Map<string, ServiceRoute>();
  let defaultRoute: ServiceRoute | null = null;
  for (const s of spec.services) {
    const route: ServiceRoute = {
      name: s.name,
      policy: s.balance,
      upstream: s.upstream,
      targets: s.targets.map((t) => deps.target(t, s.name, s.upstream)),
      counters: deps.counters(s.name),
      rotation: deps.rotation(s.name),
    };
    services.set(s.name, route);
    for (const h of s.hosts) byHost.set(normalizeHost(h), route);
    if (s.isDefault) defaultRoute = route;
  }
  return new RoutingSnapshot(services, byHost, defaultRoute);
}
