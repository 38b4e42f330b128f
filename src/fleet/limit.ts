// At most N hosts at a time: preflight, shipping and status talk to every host,
// and at 50 hosts the operator's CPU and uplink (one ssh process per host, one
// artifact copy per host) are the limit, not the hosts.

/** Like Promise.allSettled(items.map(f)), with at most `limit` calls running at once; results in order. */
export async function settledWithLimit<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const out: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = { status: 'fulfilled', value: await f(items[i]!) };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return out;
}

/** Like Promise.all(items.map(f)) with at most `limit` at once: the first failure is thrown once all have settled. */
export async function allWithLimit<T, R>(items: readonly T[], limit: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const r = await settledWithLimit(items, limit, f);
  for (const x of r) if (x.status === 'rejected') throw x.reason;
  return r.map((x) => (x as PromiseFulfilledResult<R>).value);
}
