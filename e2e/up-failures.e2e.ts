import { afterAll, describe, expect, it } from 'vitest';
import { freePort, leftovers, lmsctl, projectName, removeProject } from './harness.js';

const project = projectName('nopull');

afterAll(async () => {
  await removeProject(project);
});

describe('lmsctl up when an image cannot be pulled', () => {
  it('fails before creating anything, names the image and suggests --native', async () => {
    const ports = await Promise.all(Array.from({ length: 6 }, freePort));
    const up = await lmsctl(['up', '--project-name', project, 'mailpit'], {
      // A registry address nothing listens on: the pull fails at once, as without a registry.
      MAILPIT_IMAGE: '127.0.0.1:1/lms-e2e/missing:1',
      DEV_API_PORT: String(ports[0]),
      DEV_WORKER_METRICS_PORT: String(ports[1]),
      DEV_MAILPIT_UI_PORT: String(ports[2]),
      DEV_SMTP_PORT: String(ports[3]),
      DEV_POSTGRES_PORT: String(ports[4]),
      DEV_REDIS_PORT: String(ports[5]),
    });
    expect(up.exitCode).toBe(1);
    expect(up.stderr).toContain('error: cannot pull 127.0.0.1:1/lms-e2e/missing:1 (mailpit); nothing was started');
    expect(up.stderr).toContain('lmsctl up --native');
    expect(await leftovers(project)).toEqual({ containers: [], volumes: [], networks: [] });
  });
});
