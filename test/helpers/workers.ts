// Which proxy worker (`proxy.workers` > 1) served a request: status lists each
// worker's count, so a request sent while nothing else is, on a connection of
// its own, is the one whose worker's count went up by one. The kernel picks
// the worker of each new connection, so "each worker" is reached by trying
// new connections until both were seen.

import assert from 'node:assert/strict';
import { waitUntil, type TestDaemon } from './daemon.ts';

export interface WorkerRow {
  index: number;
  pid: number | null;
  requests: number;
  restarts: number;
}

export async function workerRows(d: TestDaemon): Promise<WorkerRow[]> {
  return (await d.status()).daemon.proxyWorkers as WorkerRow[];
}

/** Send one request (on a new connection, nothing else in flight) and find the worker that counted it (reports come every 500 ms). */
export async function servedBy<T>(d: TestDaemon, send: () => Promise<T>): Promise<{ worker: number; answer: T }> {
  const before = (await workerRows(d)).map((w) => w.requests);
  const answer = await send();
  let worker = -1;
  await waitUntil('the request to be counted by one worker', async () => {
    const up = (await workerRows(d)).map((w, i) => w.requests - before[i]!);
    const total = up.reduce((a, b) => a + b, 0);
    assert.ok(total <= 1, `one request, counted ${JSON.stringify(up)}`);
    worker = up.indexOf(1);
    return total === 1;
  }, 10_000, 50);
  return { worker, answer };
}

/**
 * Until the workers' counts stop moving: two reads more than a report period
 * (500 ms) apart agree, so what earlier load sent is all counted and the next
 * request's worker can be told by its count.
 */
export async function countsSettled(d: TestDaemon): Promise<void> {
  let last = '';
  await waitUntil('the workers\' counts to settle', async () => {
    const now = JSON.stringify((await workerRows(d)).map((w) => [w.pid, w.requests]));
    const same = now === last;
    last = now;
    return same;
  }, 15_000, 600);
}

/** Requests on new connections until each of the `n` workers served one: the answers, by worker. */
export async function fromEachWorker<T>(d: TestDaemon, send: (attempt: number) => Promise<T>, n = 2): Promise<Map<number, T[]>> {
  await countsSettled(d);
  const seen = new Map<number, T[]>();
  // With two workers, 40 connections all taken by one would be a 1 in 2^39 chance.
  for (let attempt = 0; attempt < 20 * n && seen.size < n; attempt++) {
    const { worker, answer } = await servedBy(d, () => send(attempt));
    seen.set(worker, [...(seen.get(worker) ?? []), answer]);
  }
  assert.deepEqual([...seen.keys()].sort((a, b) => a - b), [...Array(n).keys()], 'every worker served a request');
  return seen;
}
