// Read verbs: status, releases, history, logs. Each has --json.

import { BatonError } from '../../core/errors.ts';
import { formatDuration } from '../../core/time.ts';
import type { DeploymentInfo, FrontServiceStatus, ReleaseInfo, StatusResponse } from '../../control/protocol.ts';
import { clientFor, type CliContext } from '../context.ts';
import { ago, table, when } from '../output.ts';

function tlsLines(ctx: CliContext, t: NonNullable<StatusResponse['tls']>): void {
  ctx.out(`https on ${t.listeners.join(', ')}${t.http2 ? ' (HTTP/2 and HTTP/1.1)' : ''}\n`);
  for (const c of t.certificates) {
    ctx.out(`  certificate ${c.hosts.join(', ')}${c.isDefault ? ' (default)' : ''}: ${c.source === 'acme' ? 'ACME' : c.file}, valid until ${c.notAfter}\n`);
  }
  const a = t.acme;
  if (a !== null) {
    const state = a.notAfter === null ? 'no certificate yet' : `renews from ${a.renewAt}`;
    ctx.out(`  acme ${a.hosts.join(', ')} at ${a.directory}: ${state}${a.failures ? `; ${a.failures} failure(s), next try ${a.nextAttempt}: ${a.lastError}` : ''}\n`);
  }
}

export async function statusCommand(ctx: CliContext): Promise<number> {
  const [service] = ctx.args;
  const s = await clientFor(ctx).get<StatusResponse>(`/status${service ? `?service=${encodeURIComponent(service)}` : ''}`);
  if (ctx.json) {
    ctx.out(JSON.stringify(s, null, 2) + '\n');
    return 0;
  }
  ctx.out(`baton ${s.daemon.version}, pid ${s.daemon.pid}, up ${formatDuration(Date.now() - s.daemon.startedAt)}, listening on ${s.daemon.listeners.join(', ')}\n`);
  const al = s.daemon.accessLog;
  if (al) ctx.out(`access log: ${al.path}, ${al.written} line(s) written${al.dropped > 0 ? `, ${al.dropped} dropped (the disk was slower than the traffic)` : ''}\n`);
  if (s.tls) tlsLines(ctx, s.tls);
  for (const svc of s.services) {
    const standby = svc.standbyRelease
      ? `${svc.standbyRelease}${svc.standbyWarmUntil ? ` (warm for ${formatDuration(Math.max(0, svc.standbyWarmUntil - Date.now()))})` : ' (cold)'}`
      : '-';
    ctx.out(`\nservice ${svc.name}${svc.isDefault ? ' (default)' : ''}${svc.hosts.length ? `  hosts: ${svc.hosts.join(', ')}` : ''}\n`);
    ctx.out(`  current: ${svc.currentRelease ?? '- (deploy a release)'}\n  standby: ${standby}\n`);
    if (svc.deploying !== null) ctx.out(`  deploying: deployment #${svc.deploying}\n`);
    for (const dr of svc.draining ?? []) {
      const left = formatDuration(Math.max(0, dr.deadline - Date.now()));
      ctx.out(`  draining: ${dr.release} (deployment #${dr.seq}, ${dr.websockets} WebSocket(s), ${dr.inflight} request(s) in flight, at most ${left} more; \`baton rollback ${svc.name}\` switches back at once)\n`);
      if (dr.websockets > 0 && dr.websocketsCloseFrom !== undefined) {
        const at = (ms: number): string => new Date(ms).toISOString().slice(11, 19);
        const from = dr.websocketsCloseFrom > Date.now() ? `one at a time from ${at(dr.websocketsCloseFrom)}` : 'one at a time now';
        ctx.out(`    ${dr.websockets} WebSocket(s) left: closed (1001) ${from}, the last at ${at(dr.deadline)} UTC\n`);
      }
    }
    if (svc.canary) {
      const c = svc.canary;
      const waiting = c.waiting === 'promote' ? ` (waiting for \`baton promote ${svc.name}\`)` : c.waiting ? ` (${c.waiting})` : '';
      ctx.out(`  canary: ${c.release} at ${c.weight}%, step ${c.step}/${c.steps.length}: ${c.steps.join(' → ')}${waiting}\n`);
    }
    if (svc.maintenance) ctx.out(`  MAINTENANCE since ${when(svc.maintenance.since)}${svc.maintenance.message ? `: ${svc.maintenance.message}` : ''}\n`);
    if (svc.paused) ctx.out(`  PAUSED: new requests are held (\`baton resume ${svc.name}\`)\n`);
    ctx.out(`  requests: ${svc.counters.requests}, failed in baton: ${svc.counters.failed}, app 5xx: ${svc.counters.appErrors}, retried: ${svc.counters.retries}, websockets: ${svc.counters.websockets}\n`);
    const sh = svc.shedding;
    if (sh.shed > 0 || sh.queuedNow > 0) ctx.out(`  in-flight cap: ${sh.shed} shed with 503 (${sh.queueTimeouts} after waiting), ${sh.queuedNow} waiting now\n`);
    const shown = svc.releases.filter((r) => r.release !== '-' || r.requests > 0);
    if (shown.length) {
      const rows = [['RELEASE', 'REQUESTS', '2XX', '3XX', '4XX', 'APP 5XX', 'FAILED', 'CONN ERR', 'P99', 'INFLIGHT', 'WS']];
      for (const r of shown) {
        rows.push([r.release, String(r.requests), String(r.status['2xx']), String(r.status['3xx']), String(r.status['4xx']), String(r.appErrors), String(r.failed), String(r.connectionErrors), r.p99Ms === null ? '-' : r.p99Ms === Infinity ? '>10s' : `≤${r.p99Ms}ms`, String(r.inflight), String(r.websockets)]);
      }
      ctx.out(table(rows).replace(/^/gm, '  ') + '\n');
    }
    if (svc.instances.length) {
      const rows = [['INSTANCE', 'RELEASE', 'ROLE', 'PID', 'PORT', 'HEALTH', 'INFLIGHT', 'WS', 'REQUESTS', 'UP']];
      for (const i of svc.instances) {
        rows.push([i.id, i.release, i.role, String(i.pid), String(i.port), i.state, String(i.inflight), String(i.websockets), String(i.requests), formatDuration(Date.now() - i.startedAt)]);
      }
      ctx.out(table(rows).replace(/^/gm, '  ') + '\n');
    }
  }
  for (const f of s.fronts ?? []) frontLines(ctx, f);
  return 0;
}

/** A front service: its targets (other hosts), whether each gets new requests and why not, and its figures. */
function frontLines(ctx: CliContext, f: FrontServiceStatus): void {
  const c = f.check;
  ctx.out(`\nfront service ${f.name}${f.isDefault ? ' (default)' : ''}${f.hosts.length ? `  hosts: ${f.hosts.join(', ')}` : ''}\n`);
  ctx.out(`  balance: ${f.balance}; check: GET ${c.path} every ${formatDuration(c.intervalMs)} (timeout ${formatDuration(c.timeoutMs)}, in after ${c.healthyThreshold}, out after ${c.unhealthyThreshold})\n`);
  ctx.out(`  requests: ${f.counters.requests}, failed in baton: ${f.counters.failed}, 5xx from targets: ${f.counters.appErrors}, retried: ${f.counters.retries}, websockets: ${f.counters.websockets}\n`);
  const rows = [['TARGET', 'ADDRESS', 'STATE', 'WEIGHT', 'REQUESTS', '2XX', '5XX', 'CONN ERR', 'RETRIED', 'P99', 'INFLIGHT', 'WS', 'SINCE']];
  for (const t of f.targets) {
    const weight = t.effectiveWeight === t.weight ? String(t.weight) : `${t.effectiveWeight}/${t.weight}`;
    rows.push([t.name, t.address, t.state, weight, String(t.requests), String(t.status['2xx']), String(t.status['5xx']), String(t.connectionErrors), String(t.retries), t.p99Ms === null ? '-' : t.p99Ms === Infinity ? '>10s' : `≤${t.p99Ms}ms`, String(t.inflight), String(t.websockets), formatDuration(Date.now() - t.since)]);
  }
  ctx.out(table(rows).replace(/^/gm, '  ') + '\n');
  for (const t of f.targets) {
    if (t.reason !== null) ctx.out(`  ${t.name}: ${t.reason}\n`);
    if (t.agent !== null && t.agent.startsWith('agent ')) ctx.out(`  ${t.name}: its agent-check cannot be read (${t.agent.slice(6)}); the HTTP check alone decides\n`);
  }
}

export async function releasesCommand(ctx: CliContext): Promise<number> {
  const [service] = ctx.args;
  if (!service) throw new BatonError('USAGE', 'usage: baton releases SERVICE [--json]');
  const rs = await clientFor(ctx).get<ReleaseInfo[]>(`/services/${encodeURIComponent(service)}/releases`);
  if (ctx.json) {
    ctx.out(JSON.stringify(rs, null, 2) + '\n');
    return 0;
  }
  if (rs.length === 0) {
    ctx.out(`no releases of ${service} yet; deploy one with \`baton deploy ${service} DIR\`\n`);
    return 0;
  }
  const rows = [['', 'RELEASE', 'NAME', 'CREATED', 'LAST DEPLOYED', 'SOURCE']];
  for (const r of rs) rows.push([r.current ? '*' : r.standby ? 's' : '', r.id, r.name, when(r.createdAt), ago(r.lastDeployedAt), r.sourcePath]);
  ctx.out(table(rows) + '\n(* current, s standby: the rollback target)\n');
  return 0;
}

export async function historyCommand(ctx: CliContext): Promise<number> {
  const [service, arg] = ctx.args;
  if (!service) throw new BatonError('USAGE', 'usage: baton history SERVICE [DEPLOYMENT] [--json]');
  // DEPLOYMENT is the number `baton history` shows: 12, #12 or web#12.
  const id = arg?.startsWith(`${service}#`) ? arg.slice(service.length + 1) : arg?.startsWith('#') ? arg.slice(1) : arg;
  if (id !== undefined && !/^\d+$/.test(id)) throw new BatonError('USAGE', `DEPLOYMENT must be a number of ${service}'s deployments as \`baton history ${service}\` shows it (12, #12 or ${service}#12), got "${arg}"`);
  const ds = await clientFor(ctx).get<DeploymentInfo[]>(`/services/${encodeURIComponent(service)}/history?events=1&limit=20${id ? `&seq=${id}` : ''}`);
  if (ctx.json) {
    ctx.out(JSON.stringify(ds, null, 2) + '\n');
    return 0;
  }
  if (id !== undefined) {
    const d = ds[0]!;
    ctx.out(`deployment #${d.seq}: ${d.kind} of ${service}, ${d.fromRelease ?? '(nothing)'} → ${d.toRelease}, ${d.state}\n`);
    ctx.out(`started ${when(d.startedAt)} by ${d.actor}${d.finishedAt ? `, took ${formatDuration(d.finishedAt - d.startedAt)}` : ''}; ${d.requests} request(s) answered, ${d.failed} failed\n`);
    if (d.error) ctx.out(`error: ${d.error}\n`);
    for (const e of d.events ?? []) {
      const clock = `+${((e.at - d.startedAt) / 1000).toFixed(1)}s`.padStart(8);
      const [first, ...rest] = e.message.split('\n');
      ctx.out(`${clock} ${e.level === 'info' ? ' ' : e.level === 'warn' ? '!' : '✗'} ${e.step.padEnd(10)} ${first}\n`);
      for (const l of rest) ctx.out(`${' '.repeat(22)}| ${l}\n`);
    }
    return 0;
  }
  if (ds.length === 0) {
    ctx.out(`no deployments of ${service} yet\n`);
    return 0;
  }
  const rows = [['DEPLOYMENT', 'KIND', 'STATE', 'STARTED', 'TOOK', 'FROM', 'TO', 'REQUESTS', 'FAILED', 'BY']];
  for (const d of ds) {
    rows.push([`#${d.seq}`, d.kind, d.state, when(d.startedAt), d.finishedAt ? formatDuration(d.finishedAt - d.startedAt) : '-', d.fromRelease ?? '-', d.toRelease, String(d.requests), String(d.failed), d.actor]);
  }
  ctx.out(table(rows) + '\n');
  return 0;
}

export async function logsCommand(ctx: CliContext): Promise<number> {
  const [service] = ctx.args;
  if (!service) throw new BatonError('USAGE', 'usage: baton logs SERVICE [--follow] [--lines N] [--json]');
  const follow = ctx.flags['follow'] === true;
  const lines = typeof ctx.flags['lines'] === 'string' ? ctx.flags['lines'] : '50';
  if (!/^\d+$/.test(lines)) throw new BatonError('USAGE', `--lines must be a number, got "${lines}"`);
  const ac = new AbortController();
  if (follow) process.once('SIGINT', () => ac.abort());
  // --json: one object per line, { instance, line }.
  let partial = '';
  const write = ctx.json
    ? (chunk: string): void => {
        const text = partial + chunk;
        const parts = text.split('\n');
        partial = parts.pop() ?? '';
        for (const p of parts) {
          const bar = p.indexOf(' | ');
          ctx.out(JSON.stringify(bar > 0 ? { instance: p.slice(0, bar), line: p.slice(bar + 3) } : { instance: null, line: p }) + '\n');
        }
      }
    : ctx.out;
  await clientFor(ctx).text(`/services/${encodeURIComponent(service)}/logs?lines=${lines}${follow ? '&follow=1' : ''}`, write, ac.signal);
  return 0;
}
