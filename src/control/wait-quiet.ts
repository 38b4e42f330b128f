// "Wait until the host is quiet": the balancer has stopped sending this host
// requests. Shared by `baton drain --wait-quiet` (next to the daemon) and the
// fleet's drain (through the forwarded control socket); each says in its own
// words what to do when the host stays busy.

import type { BatonError } from '../core/errors.ts';
import type { StatusResponse } from './protocol.ts';

/**
 * Resolve once no request or WebSocket is in flight and no new request came
 * for `quietMs`; after `timeoutMs`, throw what `stillBusy` makes of the
 * number still in flight.
 */
export async function waitQuiet(
  status: () => Promise<StatusResponse>,
  quietMs: number,
  timeoutMs: number,
  stillBusy: (busy: number) => BatonError,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  for (;;) {
    const st = await status();
    let requests = 0;
    let busy = 0;
    for (const svc of st.services) {
      requests += svc.counters.requests;
      for (const i of svc.instances) busy += i.inflight + i.websockets;
    }
    if (requests !== last || busy > 0) {
      last = requests;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return;
    }
    if (Date.now() > end) throw stillBusy(busy);
    await new Promise((r) => setTimeout(r, 100));
  }
}
