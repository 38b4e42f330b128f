// The dashboard's pages, rendered on the server. The parts that change while a
// page is open are "fragments" (an element id → its inner HTML): the page is
// first rendered with them, and the live stream sends a fragment again only
// when it changed, so there is one way to draw each thing.

import type { DeploymentInfo, InstanceStatus, ServiceStatus, StatusResponse } from '../control/protocol.ts';
import { formatDuration } from '../core/time.ts';
import type { Assets } from './assets.ts';
import { Html, html, jsonScript } from './html.ts';
import type { LiveFigures, Tick } from './live.ts';

export type Fragments = Record<string, Html>;

export interface PageContext {
  assets: Assets;
  csrf: string;
  services: string[];
  /** A one-time message after an action (role=alert). */
  flash: { ok: boolean; text: string } | null;
}

/** The releases' column names: "-" is what the proxy answered itself (no instance). */
export const releaseLabel = (r: string): string => (r === '-' ? 'baton (no instance)' : r);

export const time = (ms: number): Html => {
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.slice(11, 19)} UTC</time>`;
};
export const rate = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
export const pct = (x: number | null): string => (x === null ? '–' : `${(x * 100).toFixed(x > 0 && x < 0.001 ? 3 : 1)}%`);
export const ms = (x: number | null): string => (x === null ? '–' : x >= 10_000 ? '≥10s' : `≤${x} ms`);

export function layout(ctx: PageContext, title: string, main: Html, extra: { charts?: boolean; page: string; service?: string }): Html {
  const { assets } = ctx;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · baton</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${assets.url('app.css')}">
${extra.charts ? html`<link rel="stylesheet" href="${assets.url('uplot.css')}"><script defer src="${assets.url('uplot.js')}"></script>` : ''}
<script defer src="${assets.url('app.js')}"></script>
</head>
<body data-page="${extra.page}" data-service="${extra.service ?? ''}">
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/">baton</a>
  ${ctx.services.length ? html`<nav aria-label="Services"><ul>${ctx.services.map((s) => html`<li><a href="/services/${encodeURIComponent(s)}"${s === extra.service ? html` aria-current="page"` : ''}>${s}</a></li>`)}</ul></nav>` : ''}
  <span id="live-state" class="live" role="status">connecting…</span>
  <form method="post" action="/logout" class="logout">${csrfField(ctx)}<button type="submit" class="link">Sign out</button></form>
</header>
<main id="main" tabindex="-1">
${ctx.flash ? html`<p class="flash ${ctx.flash.ok ? 'ok' : 'bad'}" role="alert">${ctx.flash.text}</p>` : ''}
${main}
</main>
<dialog id="confirm" aria-labelledby="confirm-text">
  <p id="confirm-text"></p>
  <div class="buttons"><button type="button" value="cancel" class="secondary">Cancel</button> <button type="button" value="ok" class="danger">Confirm</button></div>
</dialog>
</body>
</html>
`;
}

export function csrfField(ctx: PageContext): Html {
  return html`<input type="hidden" name="_csrf" value="${ctx.csrf}">`;
}

/** A POST form with a confirmation (a dialog with JavaScript, a confirmation page without). */
function action(ctx: PageContext, service: string, verb: string, label: string, confirm: string, style = ''): Html {
  return html`<form method="post" action="/services/${encodeURIComponent(service)}/${verb}" data-confirm="${confirm}">${csrfField(ctx)}<button type="submit" class="${style}">${label}</button></form>`;
}

export function region(id: string, frags: Fragments, tag = 'div', attrs = ''): Html {
  return new Html(`<${tag} id="${id}"${attrs}>${frags[id]?.value ?? ''}</${tag}>`);
}

// ---- overview ------------------------------------------------------------

export function overviewFragments(status: StatusResponse, live: LiveFigures): Fragments {
  const f: Fragments = {};
  const drain = status.host.drain;
  f['host'] = html`This host, for the load balancer in front: <span class="${drain.mode === 'ready' ? 'ok' : 'bad'}">${drain.mode}</span>${drain.weightPercent !== null ? ` at ${drain.weightPercent}%` : ''}${drain.mode !== 'ready' ? html` since ${time(drain.since)}${drain.reason ? ` (${drain.reason})` : ''}` : ''}.`;
  for (const s of status.services) {
    const id = (k: string): string => `svc-${s.name}-${k}`;
    const sum = live.summary(s.name, 5);
    f[id('release')] = html`${s.currentRelease ?? '(none)'}`;
    f[id('standby')] = html`${s.standbyRelease ?? '–'}${s.standbyRelease && s.standbyWarmUntil ? html` <span class="muted">(warm)</span>` : ''}`;
    f[id('instances')] = instancesSummary(s.instances);
    f[id('rps')] = html`${rate(sum.rps)}`;
    f[id('err')] = html`${pct(sum.errorRate)}`;
    f[id('failed')] = sum.failed > 0 ? html`<span class="bad">${rate(sum.failed)}/s</span>` : html`0`;
    f[id('p99')] = html`${ms(sum.p99Ms)}`;
    f[id('state')] = badges(s);
  }
  return f;
}

function instancesSummary(list: InstanceStatus[]): Html {
  const serving = list.filter((i) => i.role === 'current' || i.role === 'canary');
  const healthy = serving.filter((i) => i.healthy).length;
  // Instances not taking traffic, by role: the warm standby, a deploy's incoming or retiring group.
  const byRole = new Map<string, number>();
  for (const i of list) if (!serving.includes(i)) byRole.set(i.role, (byRole.get(i.role) ?? 0) + 1);
  const others = [...byRole].map(([role, n]) => `+${n} ${role}`).join(', ');
  return html`<span class="${healthy === serving.length && serving.length > 0 ? 'ok' : 'bad'}">${healthy}/${serving.length} healthy</span>${others ? html` <span class="muted">${others}</span>` : ''}`;
}

function badges(s: ServiceStatus): Html {
  const b: Html[] = [];
  if (s.deploying !== null) b.push(html`<span class="badge run">deploying #${s.deploying}</span>`);
  if (s.canary) b.push(html`<span class="badge canary">canary ${s.canary.release} ${s.canary.weight}%</span>`);
  if (s.paused) b.push(html`<span class="badge warn">paused</span>`);
  if (s.maintenance) b.push(html`<span class="badge warn">maintenance</span>`);
  if (b.length === 0) b.push(html`<span class="badge idle">steady</span>`);
  return html`${b.map((x) => html`${x} `)}`;
}

/** `after`: what follows the services' table (the front services, src/dashboard/front-pages.ts). */
export function overviewPage(ctx: PageContext, status: StatusResponse, frags: Fragments, after: Html | null = null): Html {
  const cell = (s: string, k: string, cls = ''): Html => region(`svc-${s}-${k}`, frags, 'td', cls ? ` class="${cls}"` : '');
  const main = html`
<h1>Services</h1>
${status.services.length === 0 && after !== null ? '' : html`<div class="scroll">
<table class="services">
<caption class="sr-only">Every service, live: requests per second, the app's 5xx share, requests baton failed and p99 latency over the last 5 seconds</caption>
<thead><tr><th scope="col">Service</th><th scope="col">Release</th><th scope="col">Standby</th><th scope="col">Instances</th><th scope="col" class="num">Requests/s</th><th scope="col" class="num"><abbr title="Share of requests the app answered with a 5xx">App 5xx</abbr></th><th scope="col" class="num"><abbr title="Requests baton itself failed (no instance, 502, 504, cut responses), per second">Failed</abbr></th><th scope="col" class="num">p99</th><th scope="col">State</th></tr></thead>
<tbody>
${status.services.map((s) => html`<tr data-service="${s.name}"><th scope="row"><a href="/services/${encodeURIComponent(s.name)}">${s.name}</a></th>${cell(s.name, 'release')}${cell(s.name, 'standby')}${cell(s.name, 'instances')}${cell(s.name, 'rps', 'num')}${cell(s.name, 'err', 'num')}${cell(s.name, 'failed', 'num')}${cell(s.name, 'p99', 'num')}${cell(s.name, 'state')}</tr>`)}
</tbody>
</table>
</div>`}
${after}
${region('host', frags, 'p')}
<p class="muted">Daemon ${status.daemon.version}, pid ${status.daemon.pid}, up since ${time(status.daemon.startedAt)}; listening on ${status.daemon.listeners.join(', ')}.</p>`;
  return layout(ctx, 'Services', main, { page: 'overview' });
}

// ---- one service -----------------------------------------------------------

export interface ServiceView {
  status: ServiceStatus;
  /** The running deployment, else the latest one, with its events. */
  deployment: DeploymentInfo | null;
  /** Tail of each hook's output of that deployment. */
  hooks: { name: string; lines: string[] }[];
}

export function serviceFragments(ctx: PageContext, v: ServiceView, live: LiveFigures): Fragments {
  const s = v.status;
  return {
    summary: summary(s),
    now: nowTable(live.latest(s.name)),
    controls: controls(ctx, s),
    deployment: v.deployment ? timeline(v.deployment, v.hooks, s.deploying === v.deployment.seq) : html`<p class="muted">No deployment yet.</p>`,
    instances: instanceTable(s.instances),
  };
}

function summary(s: ServiceStatus): Html {
  return html`<dl class="facts">
<div><dt>Current</dt><dd>${s.currentRelease ?? '(none)'}</dd></div>
<div><dt>Standby</dt><dd>${s.standbyRelease ?? '–'}${s.standbyWarmUntil ? html` <span class="muted">warm until ${time(s.standbyWarmUntil)}</span>` : ''}</dd></div>
<div><dt>Hosts</dt><dd>${s.hosts.length ? s.hosts.join(', ') : s.isDefault ? '(default service)' : '–'}</dd></div>
<div><dt>State</dt><dd>${badges(s)}</dd></div>
</dl>`;
}

/** The latest second, per release (or per target of a front service): the charts' figures as text (what a screen reader and the tests read). */
export function nowTable(tick: Tick | null, per: 'release' | 'target' = 'release'): Html {
  const rows = Object.entries(tick?.releases ?? {});
  if (rows.length === 0) return html`<p class="muted">No traffic in the last minute.</p>`;
  return html`<div class="scroll"><table class="now"><caption>Last second, per ${per}</caption>
<thead><tr><th scope="col">${per === 'release' ? 'Release' : 'Target'}</th><th scope="col" class="num">Requests/s</th><th scope="col" class="num">App 5xx</th><th scope="col" class="num">Failed/s</th><th scope="col" class="num">p99</th><th scope="col" class="num">In-flight</th><th scope="col" class="num">WebSockets</th></tr></thead>
<tbody>${rows.map(([r, p]) => html`<tr data-release="${r}"><th scope="row">${releaseLabel(r)}</th><td class="num" data-k="rps">${rate(p.rps)}</td><td class="num">${pct(p.errorRate)}</td><td class="num${p.failed > 0 ? ' bad' : ''}" data-k="failed">${p.failed > 0 ? rate(p.failed) : '0'}</td><td class="num">${ms(p.p99Ms)}</td><td class="num">${p.inflight}</td><td class="num">${p.websockets}</td></tr>`)}</tbody></table></div>`;
}

function controls(ctx: PageContext, s: ServiceStatus): Html {
  const parts: Html[] = [];
  const c = s.canary;
  if (c) {
    const waiting = c.waiting === 'promote' ? 'waiting for you to promote' : c.waiting === 'analysis' ? 'analysis running' : c.waiting === 'pause' ? 'pausing' : 'moving';
    parts.push(html`<section class="canary" aria-labelledby="canary-h">
<h2 id="canary-h">Canary ${c.release}</h2>
<p><span id="canary-weight" class="weight">${c.weight}%</span> of visitors on ${c.release}, the rest on ${s.currentRelease ?? '(none)'} · step ${c.step} of ${c.steps.length} · ${waiting}</p>
<meter class="weight" min="0" max="100" value="${c.weight}" aria-label="Canary weight">${c.weight}%</meter>
<ol class="steps">${c.steps.map((st, i) => html`<li class="${i + 1 < c.step ? 'done' : i + 1 === c.step ? 'current' : ''}"${i + 1 === c.step ? html` aria-current="step"` : ''}>${st}</li>`)}</ol>
<div class="buttons">
${action(ctx, s.name, 'promote', 'Promote', `Promote ${c.release} of ${s.name} to the next step?`, 'primary')}
${action(ctx, s.name, 'promote-full', 'Promote to 100%', `Send all of ${s.name}'s traffic to ${c.release} now?`, 'primary')}
${action(ctx, s.name, 'abort', 'Abort canary', `Abort the canary: all of ${s.name}'s traffic back to ${s.currentRelease ?? 'the stable release'}?`, 'danger')}
</div>
</section>`);
  }
  if (s.standbyRelease && s.deploying === null) {
    parts.push(html`<section class="rollback" aria-labelledby="rollback-h"><h2 id="rollback-h">Rollback</h2>
<p>${s.standbyRelease} is the previous release${s.standbyWarmUntil ? ' and is still running: the switch back is instant' : ''}.</p>
<div class="buttons">${action(ctx, s.name, 'rollback', `Roll back to ${s.standbyRelease}`, `Roll ${s.name} back from ${s.currentRelease ?? '(none)'} to ${s.standbyRelease}?`, 'danger')}</div></section>`);
  }
  return html`${parts}`;
}

function timeline(d: DeploymentInfo, hooks: ServiceView['hooks'], running: boolean): Html {
  const events = d.events ?? [];
  // Steps in order, each with its own events; a step's time runs until the next step starts.
  const steps: { step: string; at: number; events: typeof events }[] = [];
  for (const e of events) {
    const last = steps[steps.length - 1];
    if (!last || last.step !== e.step) steps.push({ step: e.step, at: e.at, events: [e] });
    else last.events.push(e);
  }
  const end = d.finishedAt ?? Date.now();
  return html`<p><strong>#${d.seq}</strong> ${d.kind} ${d.fromRelease ?? '(nothing)'} → ${d.toRelease} · <span class="state ${d.state}">${d.state}</span> · started ${time(d.startedAt)} by ${d.actor}${d.finishedAt ? html` · took ${formatDuration(d.finishedAt - d.startedAt)}` : ''}${d.finishedAt ? html` · ${d.requests} requests, ${d.failed} failed` : ''}</p>
${d.error ? html`<p class="flash bad">${d.error}</p>` : ''}
<ol class="timeline">${steps.map((st, i) => {
    const until = steps[i + 1]?.at ?? end;
    const current = running && i === steps.length - 1;
    return html`<li class="${current ? 'current' : ''}"${current ? html` aria-current="step"` : ''}><span class="step">${st.step}</span> <span class="muted">+${formatDuration(st.at - d.startedAt)}</span> <span class="dur">${current ? `${formatDuration(until - st.at)}…` : formatDuration(until - st.at)}</span>
<ul>${st.events.map((e) => html`<li class="${e.level}">${time(e.at)} ${e.message}</li>`)}</ul></li>`;
  })}</ol>
${hooks.map((h) => html`<details class="hook" data-key="${h.name}"><summary>${h.name} hook output (last ${h.lines.length} lines)</summary><pre>${h.lines.join('\n')}</pre></details>`)}`;
}

function instanceTable(list: InstanceStatus[]): Html {
  if (list.length === 0) return html`<p class="muted">No instance running.</p>`;
  return html`<div class="scroll"><table><thead><tr><th scope="col">Instance</th><th scope="col">Release</th><th scope="col">Role</th><th scope="col">State</th><th scope="col" class="num">pid</th><th scope="col" class="num">port</th><th scope="col" class="num">In-flight</th><th scope="col" class="num">WebSockets</th><th scope="col" class="num">Requests</th></tr></thead>
<tbody>${list.map((i) => html`<tr><th scope="row">${i.id}</th><td>${i.release}</td><td>${i.role}</td><td><span class="${i.healthy ? 'ok' : 'bad'}">${i.state}</span>${i.lastHealthError && !i.healthy ? html` <span class="muted">${i.lastHealthError}</span>` : ''}</td><td class="num">${i.pid}</td><td class="num">${i.port}</td><td class="num">${i.inflight}</td><td class="num">${i.websockets}</td><td class="num">${i.requests}</td></tr>`)}</tbody></table></div>`;
}

export const CHARTS = [
  { metric: 'rps', title: 'Requests per second' },
  { metric: 'errorRate', title: 'App 5xx share (%)' },
  { metric: 'failed', title: 'Failed by baton (per second)' },
  { metric: 'p99Ms', title: 'p99 latency (ms, bucket bound)' },
  { metric: 'inflight', title: 'In-flight requests' },
  { metric: 'websockets', title: 'Open WebSockets' },
] as const;

export function servicePage(ctx: PageContext, name: string, frags: Fragments, history: Tick[]): Html {
  const n = encodeURIComponent(name);
  const main = html`
<h1>${name}</h1>
${region('summary', frags)}
<p class="links"><a href="/services/${n}/history">Deployment history</a> · <a href="/services/${n}/logs">Instance logs</a></p>
${region('controls', frags)}
<section aria-labelledby="traffic-h">
<h2 id="traffic-h">Traffic per release</h2>
${region('now', frags, 'div', ' aria-live="off"')}
<div class="charts">${CHARTS.map((c) => html`<figure><figcaption id="chart-${c.metric}-h">${c.title}</figcaption><div class="chart" data-metric="${c.metric}" role="img" aria-labelledby="chart-${c.metric}-h"></div></figure>`)}</div>
${jsonScript('history', history)}
</section>
<section aria-labelledby="deployment-h">
<h2 id="deployment-h">Deployment</h2>
${region('deployment', frags)}
</section>
<section aria-labelledby="instances-h">
<h2 id="instances-h">Instances</h2>
${region('instances', frags)}
</section>`;
  return layout(ctx, name, main, { page: 'service', service: name, charts: true });
}

// ---- history, logs, confirmation, sign-in ---------------------------------

export function historyPage(ctx: PageContext, name: string, deployments: DeploymentInfo[]): Html {
  const main = html`
<h1>${name}: deployment history</h1>
<p class="links"><a href="/services/${encodeURIComponent(name)}">Back to ${name}</a></p>
${deployments.length === 0 ? html`<p class="muted">No deployment yet.</p>` : ''}
<ol class="history">${deployments.map((d) => html`<li><details${d.finishedAt === null ? ' open' : ''}><summary><strong>#${d.seq}</strong> ${d.kind} ${d.fromRelease ?? '(nothing)'} → ${d.toRelease} · <span class="state ${d.state}">${d.state}</span> · ${time(d.startedAt)}${d.finishedAt ? html` · ${formatDuration(d.finishedAt - d.startedAt)} · ${d.requests} requests, ${d.failed} failed` : ''}</summary>
<p class="muted">by ${d.actor}</p>${d.error ? html`<p class="flash bad">${d.error}</p>` : ''}
<ol class="events">${(d.events ?? []).map((e) => html`<li class="${e.level}">${time(e.at)} <span class="step">${e.step}</span> ${e.message}${e.durationMs !== null ? html` <span class="muted">(${formatDuration(e.durationMs)})</span>` : ''}</li>`)}</ol></details></li>`)}</ol>`;
  return layout(ctx, `${name} history`, main, { page: 'history', service: name });
}

export function logsPage(ctx: PageContext, name: string, lines: string[]): Html {
  const main = html`
<h1>${name}: instance logs</h1>
<p class="links"><a href="/services/${encodeURIComponent(name)}">Back to ${name}</a></p>
<p><label><input type="checkbox" id="follow"> Follow: new lines appear at the end (of the instances running when this page was opened)</label></p>
<pre id="log" class="log" tabindex="0" aria-label="Last lines of every instance's output">${lines.join('\n')}</pre>`;
  return layout(ctx, `${name} logs`, main, { page: 'logs', service: name });
}

/** `action`: the path the confirmed form posts to (a service's verb, or a front target's). */
export function confirmPage(ctx: PageContext, service: string, action: string, question: string): Html {
  const main = html`
<h1>Confirm</h1>
<p>${question}</p>
<form method="post" action="${action}">${csrfField(ctx)}<input type="hidden" name="confirmed" value="1">
<div class="buttons"><a class="button secondary" href="/services/${encodeURIComponent(service)}">Cancel</a> <button type="submit" class="danger">Confirm</button></div></form>`;
  return layout(ctx, 'Confirm', main, { page: 'confirm', service });
}

/** Pages shown without a session: plain, no script. */
export function plainPage(assets: Assets, title: string, body: Html): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${title} · baton</title><link rel="icon" href="data:,"><link rel="stylesheet" href="${assets.url('app.css')}"></head>
<body><main id="main" class="plain"><h1>${title}</h1>${body}</main></body></html>
`;
}
