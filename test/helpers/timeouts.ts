// Bounded waits whose timers never outlive them. A timer still pending when a
// test file's last test ends keeps that file's process alive until it fires:
// `Promise.race([exited, sleep(15_000)])` cost every file that stopped a daemon
// 15 s of nothing (about 12 minutes of the suite).

/** Whether `p` settles (either way) within `ms`; the timer is cleared as soon as it does. */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true, () => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** `p`, or a rejection naming `what` once `ms` have passed; the timer is cleared as soon as `p` settles. */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
