/**
 * Runs `work` with an AbortSignal that fires on Ctrl-C (SIGINT), SIGTERM or SIGHUP, so a
 * long operation can stop its child processes and clean up instead of dying half-way. A second
 * signal while cleaning up restores the default behaviour and re-raises it. A caller that
 * manages signals itself (the scheduler) passes its own `external` signal instead.
 */
export async function withInterrupt<T>(work: (signal: AbortSignal) => Promise<T>, external?: AbortSignal): Promise<T> {
  if (external) return work(external);
  const controller = new AbortController();
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      for (const name of signals) process.removeListener(name, onSignal);
      process.kill(process.pid, signal);
      return;
    }
    controller.abort(new InterruptedError(signal));
  };
  for (const name of signals) process.on(name, onSignal);
  try {
    return await work(controller.signal);
  } finally {
    for (const name of signals) process.removeListener(name, onSignal);
  }
}

export class InterruptedError extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
    this.name = 'InterruptedError';
  }
}
