/** Resolves with `work`'s outcome, or rejects after `ms` (`work` itself is not cancelled). */
export async function within<T>(ms: number, work: Promise<T>, what = 'no answer'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
