import { describe, expect, it } from 'vitest';
import { isJobName, jobNames, parseJobData, periodicJobNames, queueNames, queueOf } from './jobs.js';

describe('job contracts', () => {
  it('maps every job to one of the four queues', () => {
    expect(queueNames).toEqual(['emails', 'progress', 'certificates', 'webhooks']);
    for (const name of jobNames) expect(queueNames).toContain(queueOf[name]);
  });

  it('parses a valid payload and rejects an invalid one naming the field', () => {
    expect(parseJobData('progress.recompute', { enrollmentId: 'e1' })).toEqual({ enrollmentId: 'e1' });
    expect(() =>
      parseJobData('email.send', { to: 'not-an-email', template: 'welcome', props: {}, idempotencyKey: 'k' }),
    ).toThrow(/to/);
  });

  it('declares the periodic jobs with empty payloads on existing queues', () => {
    expect(periodicJobNames).toEqual(['maintenance.cleanup', 'email.inactivity-reminders']);
    for (const name of periodicJobNames) {
      expect(jobNames).toContain(name);
      expect(parseJobData(name, {})).toEqual({});
    }
    expect(queueOf['maintenance.cleanup']).toBe('certificates');
    expect(queueOf['email.inactivity-reminders']).toBe('emails');
  });

  it('knows its job names', () => {
    expect(isJobName('certificate.render')).toBe(true);
    expect(isJobName('certificate.delete')).toBe(false);
    expect(isJobName('constructor')).toBe(false);
  });
});
