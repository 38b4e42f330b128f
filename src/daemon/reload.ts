// What a config reload would change, computed before anything is touched. Pure.

import { isDeepStrictEqual } from 'node:util';
import type { DaemonConfig, ServiceConfig } from '../config/types.ts';

export interface ReloadPlan {
  /** Human lines describing what changes. */
  changes: string[];
  /** Changes a running daemon cannot apply: the reload is refused as a whole. */
  refused: string[];
  removedServices: string[];
}

const fmt = (ls: DaemonConfig['listeners']): string => ls.map((l) => `${l.host}:${l.port}`).join(', ');

export function diffConfig(prev: DaemonConfig, next: DaemonConfig): ReloadPlan {
  const changes: string[] = [];
  const refused: string[] = [];
  if (!isDeepStrictEqual(prev.listeners, next.listeners)) {
    refused.push(`listen: changed from [${fmt(prev.listeners)}] to [${fmt(next.listeners)}]; listeners change only with a daemon restart`);
  }
  if (!isDeepStrictEqual(prev.tls, next.tls)) {
    // Certificate *files* are watched and reloaded by themselves; which files and listeners is start-up state.
    refused.push('tls: changed; TLS listeners, certificate paths and ACME settings change only with a daemon restart (replaced certificate files are picked up without one)');
  }
  const dash = (c: DaemonConfig): string => (c.dashboard ? fmt([c.dashboard.listener]) : 'off');
  if (dash(prev) !== dash(next)) refused.push(`dashboard.listen: changed from ${dash(prev)} to ${dash(next)}; the dashboard's listener changes only with a daemon restart`);
  if (!isDeepStrictEqual(prev.dashboard, next.dashboard) && dash(prev) === dash(next)) changes.push('dashboard: session_timeout applies to new sessions');
  if (prev.stateDir !== next.stateDir) refused.push(`state_dir: changed; the state directory changes only with a daemon restart`);
  if (prev.controlSocket !== next.controlSocket) refused.push(`control_socket: changed; the control socket changes only with a daemon restart`);
  if (prev.control.gid !== next.control.gid || prev.control.mode !== next.control.mode) refused.push('control: changed; the control socket\'s group and mode change only with a daemon restart');
  if (!isDeepStrictEqual(prev.agentCheckListener, next.agentCheckListener)) refused.push('agent_check: changed; the agent-check listener changes only with a daemon restart');
  if (!isDeepStrictEqual(prev.proxy, next.proxy)) changes.push('proxy: timeouts apply to new connections');

  const before = new Map(prev.services.map((s) => [s.name, s]));
  const after = new Map(next.services.map((s) => [s.name, s]));
  const removedServices: string[] = [];
  for (const name of before.keys()) {
    if (!after.has(name)) {
      removedServices.push(name);
      changes.push(`services.${name}: removed (its instances are drained and stopped)`);
    }
  }
  for (const [name, s] of after) {
    const old = before.get(name);
    if (!old) {
      changes.push(`services.${name}: added (deploy a release to start it)`);
      continue;
    }
    for (const key of Object.keys(s) as (keyof ServiceConfig)[]) {
      if (isDeepStrictEqual(old[key], s[key])) continue;
      const when = key === 'command' || key === 'env' ? ' (takes effect on the next deploy or restart)' : '';
      changes.push(`services.${name}.${key}: changed${when}`);
    }
  }
  return { changes, refused, removedServices };
}
