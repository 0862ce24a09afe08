import { describe, expect, it } from 'vitest';
import { isJobName, jobNames, parseJobData, periodicJobNames, queueNames, queueOf } from './jobs.js';

describe('job contracts', () => {
  it('maps every job to one of the four queues', () => {
    expect(queueNames).toEqual(['emails', 'progress', 'certificates', 'webhooks']);
    for (const name of jobNames) expect(queueNames).toContain(queueOf[name]);
  });

  it('parses a valid payload and rejects an invalid one naming the field', () => {
    const enrollmentId = '7d1c7f8e-1b0a-4c57-9a5e-6f1f3f0e2a11';
    expect(parseJobData('progress.recompute', { enrollmentId })).toEqual({ enrollmentId });
    expect(() =>
      parseJobData('email.send', { to: 'not-an-email', template: 'welcome', props: {}, idempotencyKey: 'k' }),
    ).toThrow(/to/);
  });

  it('refuses a row id that is not a UUID in every payload that carries one', () => {
    const valid = '7d1c7f8e-1b0a-4c57-9a5e-6f1f3f0e2a11';
    for (const bad of ['e-1', '', '7d1c7f8e1b0a4c579a5e6f1f3f0e2a11', `${valid}x`, "1' OR '1'='1"]) {
      expect(() => parseJobData('progress.recompute', { enrollmentId: bad })).toThrow(/enrollmentId.*must be a UUID/s);
      expect(() => parseJobData('certificate.render', { enrollmentId: bad })).toThrow(/must be a UUID/);
      expect(() => parseJobData('webhook.deliver', { subscriptionId: valid, eventId: bad })).toThrow(
        /eventId.*must be a UUID/s,
      );
      expect(() => parseJobData('webhook.deliver', { subscriptionId: bad, eventId: valid })).toThrow(
        /subscriptionId.*must be a UUID/s,
      );
    }
  });

  it('declares the periodic jobs with empty payloads on existing queues', () => {
    expect(periodicJobNames).toEqual(['maintenance.cleanup', 'email.inactivity-reminders', 'progress.reconcile']);
    for (const name of periodicJobNames) {
      expect(jobNames).toContain(name);
      expect(parseJobData(name, {})).toEqual({});
    }
    expect(queueOf['maintenance.cleanup']).toBe('certificates');
    expect(queueOf['email.inactivity-reminders']).toBe('emails');
    expect(queueOf['progress.reconcile']).toBe('progress');
  });

  it('knows its job names', () => {
    expect(isJobName('certificate.render')).toBe(true);
    expect(isJobName('certificate.delete')).toBe(false);
    expect(isJobName('constructor')).toBe(false);
  });
});
