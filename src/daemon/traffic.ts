// How a service's live state (groups, canary, operator modes) becomes its
// entry in the routing spec the proxy applies, and the maintenance page.

import { readFile } from 'node:fs/promises';
import type { ServiceConfig } from '../config/types.ts';
import { BatonError, errorMessage } from '../core/errors.ts';
import type { ServiceRuntime } from '../deploy/service-runtime.ts';
import type { ServiceRouteSpec } from '../proxy/types.ts';

export function routeSpec(rt: ServiceRuntime, secret: string): ServiceRouteSpec {
  const c = rt.config;
  const run = rt.canary;
  return {
    name: rt.name,
    hosts: c.hosts,
    isDefault: c.isDefault,
    balance: c.balance,
    upstream: c.upstream,
    targets: rt.targets(),
    canary:
      run && run.group.role === 'canary'
        ? {
            release: run.group.release,
            targets: rt.canaryTargets(),
            weight: run.weight,
            sticky: { cookie: c.canary.sticky.cookie, secret, key: c.canary.sticky.key },
            overrides: { header: c.canary.beta.header, betaCookie: c.canary.beta.cookie, networks: c.canary.beta.networks },
          }
        : null,
    maintenance:
      rt.maintenanceHtml === null ? null : { html: rt.maintenanceHtml, retryAfterSeconds: c.maintenance.retryAfterSeconds, allow: c.maintenance.allow },
    pause: rt.paused ? { maxQueued: c.pause.maxQueued, maxWaitMs: c.pause.maxWaitMs } : null,
    wsCloseSpreadMs: c.wsCloseSpreadMs,
    limits: c.limits,
  };
}

const escape = (s: string): string => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

/** The maintenance page: the configured HTML file, or baton's own with the operator's message. */
export async function maintenancePage(svc: ServiceConfig, message: string): Promise<string> {
  if (svc.maintenance.pageFile) {
    try {
      return await readFile(svc.maintenance.pageFile, 'utf8');
    } catch (err) {
      throw new BatonError('CONFIG_INVALID', `services.${svc.name}.maintenance.page: cannot read ${svc.maintenance.pageFile}: ${errorMessage(err)}`);
    }
  }
  const text = message.trim() || 'This site is down for maintenance and will be back shortly.';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Down for maintenance</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 1em;color:#222}h1{font-size:1.5em}</style>
</head><body><h1>Down for maintenance</h1><p>${escape(text)}</p></body></html>
`;
}
