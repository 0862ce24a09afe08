import type { JobName, JobOf, Logger } from '@lms/core';

/** What a handler gets besides its parsed payload: the run's abort signal, logger and attempt. */
export interface JobContext {
  /**
   * Fires at the queue's soft time limit (and when the hard limit abandons the run): the
   * handler should stop cleanly and throw. Pass it to every cancellable call.
   */
  signal: AbortSignal;
  /** The process logger, bound to this job (queue, name, id, attempt). */
  log: Logger;
  jobId: string;
  /** 1 for the first run of the job, 2 for its first retry, … */
  attempt: number;
}

/** A job handler: idempotent, so a run repeated after a crash has the effect of one run. */
export type JobHandler<N extends JobName> = (data: JobOf<N>, ctx: JobContext) => Promise<void>;

/** One handler per job name of the contract: a missing one is a compile error. */
export type JobHandlers = { [N in JobName]: JobHandler<N> };
