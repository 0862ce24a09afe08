import type { JobName, JobOf, Logger, WebhookEventType } from '@lms/core';
import type { JobProducer } from '@lms/core/queue';
import { publishWebhookEvent, type Queryable } from '@lms/core/webhook-events';
import type { ApiMetrics } from './lib/api-metrics.js';

/**
 * How services hand work to the worker. The database write a job follows has already
 * committed, so a queue that is down (Redis unavailable) must not turn a successful request
 * into an error: the failure is logged and counted (`lms_job_enqueue_failures_total`) instead.
 */
export class JobDispatcher {
  constructor(
    private readonly producer: JobProducer,
    private readonly logger: Logger,
    private readonly metrics: ApiMetrics,
  ) {}

  async enqueue<N extends JobName>(name: N, data: JobOf<N>, options: { jobId?: string } = {}): Promise<void> {
    try {
      await this.producer.enqueue(name, data, options);
    } catch (error) {
      this.metrics.jobEnqueueFailures.inc({ name });
      this.logger.error({ err: error, job: name }, 'could not queue a job');
    }
  }

  async publish(db: Queryable, type: WebhookEventType, payload: Record<string, unknown>): Promise<void> {
    try {
      await publishWebhookEvent(db, this.producer, type, payload);
    } catch (error) {
      this.metrics.jobEnqueueFailures.inc({ name: 'webhook.deliver' });
      this.logger.error({ err: error, event: type }, 'could not publish a webhook event');
    }
  }
}
