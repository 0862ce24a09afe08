import path from 'node:path';
import { execa } from 'execa';
import { parse as parseYaml } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { composeDir } from './compose-cli.js';
import { serviceImages, servicesToStart } from './stack-images.js';

/** The prod Compose file as the real docker-compose resolves it with compose/test.env. */
describe('the services up starts', () => {
  let config: unknown;

  beforeAll(async () => {
    const resolved = await execa('docker-compose', [
      '-p',
      'lms',
      '-f',
      path.join(composeDir, 'docker-compose.prod.yml'),
      '--env-file',
      path.join(composeDir, 'test.env'),
      'config',
    ]);
    config = parseYaml(resolved.stdout);
  });

  it('leaves out a profile nobody activated (whose image would be pulled for nothing), and includes it once activated', () => {
    expect(servicesToStart(config, [])).not.toContain('pgbouncer');
    expect(serviceImages(config, servicesToStart(config, [])).map((image) => image.service)).not.toContain('pgbouncer');
    expect(servicesToStart(config, [], ['pgbouncer'])).toContain('pgbouncer');
    expect(servicesToStart(config, [], ['pgbouncer'])).toEqual(expect.arrayContaining(['api', 'migrate', 'caddy']));
  });

  it('starts a named service with what it depends on', () => {
    expect(servicesToStart(config, ['api']).sort()).toEqual(['api', 'migrate', 'postgres', 'redis']);
  });
});
