/**
 * Waits for `promise` at most `ms`: true when it settled in time (fulfilled or rejected; a
 * rejection is the caller's to observe on the promise itself), false when the time ran out.
 * The promise is left running either way; the timer never keeps the process alive.
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  try {
    return await Promise.race([
      promise.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
