// Front services in the dashboard: a service with `targets:` balances other
// hosts' baton listeners (src/front). On the overview, each with its targets
// (in rotation or out and why, weight, live figures); on its own page, the
// targets with drain / undrain buttons, live charts per target (a target's
// name is its `release` in the proxy's counters, so the same LiveFigures feed
// them) and the counters since the daemon started.

import type { FrontServiceStatus, FrontTargetStatus, StatusResponse } from '../control/protocol.ts';
import { formatDuration } from '../core/time.ts';
import { html, jsonScript, type Html } from './html.ts';
import type { LiveFigures, Tick } from './live.ts';
import { CHARTS, csrfField, layout, ms, nowTable, pct, rate, region, time, type Fragments, type PageContext } from './pages.ts';

/** Where a target's drain / undrain is posted (the same daemon method as `baton target drain|undrain`). */
export const targetActionPath = (service: string, target: string, verb: 'drain' | 'undrain'): string =>
  `/services/${encodeURIComponent(service)}/targets/${encodeURIComponent(target)}/${verb}`;

/** The question asked before a target's drain or undrain. */
export function targetQuestion(service: string, target: string, verb: 'drain' | 'undrain'): string {
  return verb === 'drain'
    ? `Drain ${target} at the front of ${service}: it gets no new request (those in flight finish) until it is undrained?`
    : `Undrain ${target} at the front of ${service}: it takes new requests again once its checks pass?`;
}

/** In rotation, or out and why (the reason names the state: "drained here by the operator: …", "its agent says maint", a check's error). */
function targetState(t: FrontTargetStatus): Html {
  if (t.inRotation) return html`<span class="ok">in rotation</span>`;
  return html`<span class="bad">out</span> <span class="muted">${t.reason ?? t.state}</span>`;
}

function weight(t: FrontTargetStatus): Html {
  return t.effectiveWeight === t.weight ? html`${t.weight}` : html`${t.effectiveWeight} <span class="muted">of ${t.weight}</span>`;
}

// ---- overview --------------------------------------------------------------------

export function frontOverviewFragments(status: StatusResponse, live: LiveFigures): Fragments {
  const f: Fragments = {};
  for (const s of status.fronts ?? []) {
    const inRotation = s.targets.filter((t) => t.inRotation).length;
    f[`front-${s.name}-count`] = html`<span class="${inRotation === s.targets.length ? 'ok' : 'bad'}">${inRotation} of ${s.targets.length} targets in rotation</span>`;
    for (const t of s.targets) {
      const id = (k: string): string => `front-${s.name}-${t.name}-${k}`;
      const sum = live.summary(s.name, 5, t.name);
      f[id('state')] = targetState(t);
      f[id('weight')] = weight(t);
      f[id('rps')] = html`${rate(sum.rps)}`;
      f[id('err')] = html`${pct(sum.errorRate)}`;
      f[id('failed')] = sum.failed > 0 ? html`<span class="bad">${rate(sum.failed)}/s</span>` : html`0`;
      f[id('p99')] = html`${ms(sum.p99Ms)}`;
    }
  }
  return f;
}

/** One table per front service, a row per target. */
export function frontOverview(status: StatusResponse, frags: Fragments): Html | null {
  const fronts = status.fronts ?? [];
  if (fronts.length === 0) return null;
  return html`<h2 id="fronts-h">Front services</h2>
<p class="muted">baton balancing other hosts' listeners: each target is one host.</p>
${fronts.map((s) => {
    const cell = (t: string, k: string, cls = ''): Html => region(`front-${s.name}-${t}-${k}`, frags, 'td', cls ? ` class="${cls}"` : '');
    return html`<section class="front" aria-labelledby="front-${s.name}-h" data-front="${s.name}">
<h3 id="front-${s.name}-h"><a href="/services/${encodeURIComponent(s.name)}">${s.name}</a> ${region(`front-${s.name}-count`, frags, 'span', ' class="count"')}</h3>
<div class="scroll">
<table class="targets">
<caption class="sr-only">The targets of ${s.name}, live: in rotation or out and why, weight, and over the last 5 seconds requests per second, the targets' 5xx share, requests baton failed and p99 latency</caption>
<thead><tr><th scope="col">Target</th><th scope="col">State</th><th scope="col" class="num">Weight</th><th scope="col" class="num">Requests/s</th><th scope="col" class="num"><abbr title="Share of requests the target answered with a 5xx">5xx</abbr></th><th scope="col" class="num"><abbr title="Requests baton itself failed on this target (502, 504, cut responses), per second">Failed</abbr></th><th scope="col" class="num">p99</th></tr></thead>
<tbody>
${s.targets.map((t) => html`<tr data-target="${t.name}"><th scope="row">${t.name} <span class="muted">${t.address}</span></th>${cell(t.name, 'state')}${cell(t.name, 'weight', 'num')}${cell(t.name, 'rps', 'num')}${cell(t.name, 'err', 'num')}${cell(t.name, 'failed', 'num')}${cell(t.name, 'p99', 'num')}</tr>`)}
</tbody>
</table>
</div>
</section>`;
  })}`;
}

// ---- one front service ---------------------------------------------------------------

export function frontFragments(ctx: PageContext, s: FrontServiceStatus, live: LiveFigures): Fragments {
  return {
    summary: frontSummary(s),
    targets: targetTable(ctx, s),
    now: nowTable(live.latest(s.name), 'target'),
    counters: counterTable(s),
  };
}

function frontSummary(s: FrontServiceStatus): Html {
  const c = s.check;
  const inRotation = s.targets.filter((t) => t.inRotation).length;
  return html`<dl class="facts">
<div><dt>Kind</dt><dd>front service</dd></div>
<div><dt>Targets in rotation</dt><dd class="${inRotation === s.targets.length ? 'ok' : 'bad'}">${inRotation} of ${s.targets.length}</dd></div>
<div><dt>Hosts</dt><dd>${s.hosts.length ? s.hosts.join(', ') : s.isDefault ? '(default service)' : '–'}</dd></div>
<div><dt>Balance</dt><dd>${s.balance}</dd></div>
<div><dt>Checks</dt><dd>${c.path} every ${formatDuration(c.intervalMs)} <span class="muted">(timeout ${formatDuration(c.timeoutMs)}, in after ${c.healthyThreshold}, out after ${c.unhealthyThreshold})</span></dd></div>
</dl>`;
}

/**
 * The targets and their buttons. Only what changes with a target's rotation
 * is here (no per-second figure), so the fragment is redrawn when the state
 * changes, not under a pointer or an open confirmation every second.
 */
function targetTable(ctx: PageContext, s: FrontServiceStatus): Html {
  return html`<div class="scroll"><table class="targets"><caption class="sr-only">The targets of ${s.name}: state, why out of rotation, weight, agent and the operator's drain</caption>
<thead><tr><th scope="col">Target</th><th scope="col">Address</th><th scope="col">State</th><th scope="col">Since</th><th scope="col" class="num">Weight</th><th scope="col">Agent</th><th scope="col">Action</th></tr></thead>
<tbody>${s.targets.map((t) => {
    const verb = t.operator ? 'undrain' : 'drain';
    const button = html`<form method="post" action="${targetActionPath(s.name, t.name, verb)}" data-confirm="${targetQuestion(s.name, t.name, verb)}">${csrfField(ctx)}<button type="submit" class="${verb === 'drain' ? 'danger' : 'primary'}">${verb === 'drain' ? 'Drain' : 'Undrain'} ${t.name}</button></form>`;
    return html`<tr data-target="${t.name}" data-state="${t.state}"><th scope="row">${t.name}</th><td>${t.address}</td><td>${targetState(t)}</td><td>${time(t.since)}</td><td class="num">${weight(t)}</td><td>${t.agent ?? '–'}</td><td>${button}</td></tr>`;
  })}</tbody></table></div>`;
}

/** What the proxy counted per target since this daemon started: the same figures as `baton status`. */
function counterTable(s: FrontServiceStatus): Html {
  const n = (x: number): string => x.toLocaleString('en-US');
  return html`<div class="scroll"><table class="counters"><caption>Since this daemon started, per target</caption>
<thead><tr><th scope="col">Target</th><th scope="col" class="num">Requests</th><th scope="col" class="num">2xx</th><th scope="col" class="num">3xx</th><th scope="col" class="num">4xx</th><th scope="col" class="num">5xx</th><th scope="col" class="num"><abbr title="Connections to the target that failed">Conn. errors</abbr></th><th scope="col" class="num"><abbr title="Requests retried on another target (they never reached this one)">Retries</abbr></th><th scope="col" class="num">p99</th><th scope="col" class="num">In-flight</th><th scope="col" class="num">WebSockets</th></tr></thead>
<tbody>${s.targets.map((t) => html`<tr data-target="${t.name}"><th scope="row">${t.name}</th><td class="num" data-k="requests">${n(t.requests)}</td><td class="num">${n(t.status['2xx'])}</td><td class="num">${n(t.status['3xx'])}</td><td class="num">${n(t.status['4xx'])}</td><td class="num${t.status['5xx'] > 0 ? ' bad' : ''}">${n(t.status['5xx'])}</td><td class="num${t.connectionErrors > 0 ? ' bad' : ''}">${n(t.connectionErrors)}</td><td class="num">${n(t.retries)}</td><td class="num">${ms(t.p99Ms)}</td><td class="num">${t.inflight}</td><td class="num">${t.websockets}</td></tr>`)}</tbody></table></div>`;
}

export function frontPage(ctx: PageContext, name: string, frags: Fragments, history: Tick[]): Html {
  const main = html`
<h1>${name}</h1>
${region('summary', frags)}
<section aria-labelledby="targets-h">
<h2 id="targets-h">Targets</h2>
${region('targets', frags)}
</section>
<section aria-labelledby="traffic-h">
<h2 id="traffic-h">Traffic per target</h2>
${region('now', frags, 'div', ' aria-live="off"')}
<div class="charts">${CHARTS.map((c) => html`<figure><figcaption id="chart-${c.metric}-h">${c.title}</figcaption><div class="chart" data-metric="${c.metric}" role="img" aria-labelledby="chart-${c.metric}-h"></div></figure>`)}</div>
${jsonScript('history', history)}
</section>
<section aria-labelledby="counters-h">
<h2 id="counters-h">Counters</h2>
${region('counters', frags)}
</section>`;
  // The service page's script: the same live fragments and charts.
  return layout(ctx, name, main, { page: 'service', service: name, charts: true });
}
