// The fleet page: every host of a fleet in one table (per service: current and
// standby release, health, its place in the balancer, baton's version, where
// the last rollout left it), and the rollouts the operator's state directory
// records. The data is gathered by `baton fleet dashboard` on the operator's
// machine (src/cli/commands/fleet-dashboard.ts) and handed here as plain
// data, so this layer knows nothing of ssh or of the fleet file.

import type { HostDrainStatus } from '../control/protocol.ts';
import { formatDuration } from '../core/time.ts';
import { Html, html } from './html.ts';
import { layout, type Fragments, type PageContext } from './pages.ts';

export interface FleetServiceView {
  name: string;
  current: string | null;
  standby: string | null;
  /** The standby's instances still run: a rollback is an instant switch. */
  standbyWarm: boolean;
  /** Healthy serving instances, of how many. */
  healthy: number;
  instances: number;
  /** The deployment running on the host, by its number in the service. */
  deploying: number | null;
}

export interface FleetHostView {
  /** The name in the fleet file. */
  host: string;
  /** What ssh is given for it. */
  destination: string;
  reachable: boolean;
  /** Why it could not be asked (ssh's or the daemon's own words). */
  error: string | null;
  version: string | null;
  drain: HostDrainStatus | null;
  services: FleetServiceView[];
  /** When this host last answered. */
  seenAt: number | null;
}

export interface FleetRolloutHostView {
  phase: string;
  from: string | null;
  to: string | null;
  error: string | null;
  /** When the host reached this phase. */
  at: number | null;
}

export interface FleetRolloutView {
  id: string;
  service: string;
  status: string;
  artifact: string;
  operator: string;
  createdAt: number;
  error: string | null;
  hosts: Record<string, FleetRolloutHostView>;
}

export interface FleetView {
  fleet: string;
  file: string;
  hosts: FleetHostView[];
  rollouts: FleetRolloutView[];
  /** When the last round of asking every host ended, and how often one runs. */
  refreshedAt: number;
  everyMs: number;
  /** The rollout records that could not be read (named with their file). */
  problems: string[];
}

const time = (ms: number): Html => {
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.slice(11, 19)} UTC</time>`;
};

const GOOD_PHASES = new Set(['done', 'switched', 'baking']);
const BAD_PHASES = new Set(['failed', 'reverted']);
const BAD_STATUS = new Set(['failed', 'reverted', 'aborted']);

function drainCell(d: HostDrainStatus | null): Html {
  if (!d) return html`–`;
  const cls = d.mode === 'ready' ? 'ok' : 'bad';
  return html`<span class="${cls}">${d.mode}</span>${d.weightPercent !== null ? ` at ${d.weightPercent}%` : ''}${d.mode !== 'ready' ? html` <span class="muted">since ${time(d.since)}${d.reason ? ` (${d.reason})` : ''}</span>` : ''}`;
}

function rolloutCell(r: FleetRolloutView | undefined, host: string): Html {
  const h = r?.hosts[host];
  if (!r || !h) return html`<span class="muted">–</span>`;
  const cls = BAD_PHASES.has(h.phase) ? 'bad' : GOOD_PHASES.has(h.phase) ? 'ok' : '';
  const release = h.phase === 'reverted' ? `back on ${h.from ?? '?'}` : h.to ?? '';
  return html`<span class="${cls}">${h.phase}</span>${release ? ` ${release}` : ''} <span class="muted">(${r.artifact}, ${r.status}${h.at !== null ? html`, ${time(h.at)}` : ''})</span>${h.error ? html`<br><span class="bad">${h.error}</span>` : ''}`;
}

function healthCell(s: FleetServiceView): Html {
  const ok = s.instances > 0 && s.healthy === s.instances;
  return html`<span class="${ok ? 'ok' : 'bad'}">${s.healthy}/${s.instances} healthy</span>${s.deploying !== null ? html` <span class="badge run">deploying #${s.deploying}</span>` : ''}`;
}

/** The rows: one per host and service (a host without a service, or unreachable, has one row). */
function hostRows(v: FleetView): Html {
  const latest = new Map(v.rollouts.map((r) => [r.service, r]));
  return html`${v.hosts.map((h) => {
    // The ssh destination, when it is not simply the host's name (an alias of the ssh config).
    const host = html`<th scope="row">${h.host}${h.destination !== h.host ? html`<br><span class="muted">${h.destination}</span>` : ''}</th>`;
    if (!h.reachable) {
      return html`<tr data-host="${h.host}" data-service="">${host}<td colspan="7" data-k="error"><span class="bad">unreachable</span>: ${h.error ?? ''}${h.seenAt !== null ? html` <span class="muted">(last answer ${time(h.seenAt)})</span>` : ''}</td></tr>`;
    }
    if (h.services.length === 0) {
      return html`<tr data-host="${h.host}" data-service="">${host}<td class="muted" colspan="4">no service</td><td data-k="drain">${drainCell(h.drain)}</td><td data-k="version">${h.version ?? '–'}</td><td></td></tr>`;
    }
    return html`${h.services.map((s) => html`<tr data-host="${h.host}" data-service="${s.name}">${host}<td>${s.name}</td><td data-k="current">${s.current ?? '(none)'}</td><td data-k="standby">${s.standby ?? '–'}${s.standby && s.standbyWarm ? html` <span class="muted">(warm)</span>` : ''}</td><td data-k="health">${healthCell(s)}</td><td data-k="drain">${drainCell(h.drain)}</td><td data-k="version">${h.version ?? '–'}</td><td data-k="rollout">${rolloutCell(latest.get(s.name), h.host)}</td></tr>`)}`;
  })}`;
}

function rollouts(v: FleetView): Html {
  if (v.rollouts.length === 0 && v.problems.length === 0) return html`<p class="muted">No rollout recorded for this fleet on this machine.</p>`;
  return html`${v.problems.map((p) => html`<p class="flash bad">${p}</p>`)}
<ul class="rollouts">${v.rollouts.map((r) => html`<li data-rollout="${r.id}"><strong>${r.service}</strong> ← ${r.artifact} · <span class="state ${BAD_STATUS.has(r.status) ? 'failed' : r.status}">${r.status}</span> · ${r.id}, by ${r.operator}, started ${time(r.createdAt)}${r.error ? html`<br><span class="bad">${r.error}</span>` : ''}
<br><span class="muted">${Object.entries(r.hosts).map(([n, h], i) => html`${i > 0 ? ', ' : ''}${n} ${h.phase}`)}</span></li>`)}</ul>`;
}

function refreshed(v: FleetView): Html {
  const down = v.hosts.filter((h) => !h.reachable).length;
  return html`${v.hosts.length} hosts${down ? html`, <span class="bad">${down} unreachable</span>` : ''}; asked over ssh every ${formatDuration(v.everyMs)}, last at ${time(v.refreshedAt)}. Fleet file ${v.file}.`;
}

export function fleetFragments(v: FleetView): Fragments {
  return { 'fleet-hosts': hostRows(v), 'fleet-rollouts': rollouts(v), 'fleet-refreshed': refreshed(v) };
}

export function fleetPage(ctx: PageContext, v: FleetView, frags: Fragments): Html {
  const region = (id: string, tag: string): Html => new Html(`<${tag} id="${id}">${frags[id]?.value ?? ''}</${tag}>`);
  const main = html`
<h1>Fleet ${v.fleet}</h1>
<div class="scroll">
<table class="fleet">
<caption class="sr-only">Every host of the fleet, per service: current and standby release, health, its state in the balancer in front, baton's version and where the last rollout left it</caption>
<thead><tr><th scope="col">Host</th><th scope="col">Service</th><th scope="col">Release</th><th scope="col">Standby</th><th scope="col">Health</th><th scope="col">Balancer</th><th scope="col">baton</th><th scope="col">Last rollout</th></tr></thead>
${region('fleet-hosts', 'tbody')}
</table>
</div>
${region('fleet-refreshed', 'p')}
<section aria-labelledby="rollouts-h">
<h2 id="rollouts-h">Rollouts</h2>
${region('fleet-rollouts', 'div')}
</section>`;
  return layout(ctx, `Fleet ${v.fleet}`, main, { page: 'fleet' });
}
