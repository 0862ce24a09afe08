import { existsSync, realpathSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgToolPath, pgToolVersion } from './tools.js';

let work: string;

beforeAll(async () => {
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-tool-path-'));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('which program a PostgreSQL tool runs as', () => {
  it("skips Debian's pg_wrapper for the newest installed version's program, the one the wrapper runs for a host", async () => {
    // These machines have Debian's postgresql-client: /usr/bin/pg_dump is the wrapper.
    expect(path.basename(realpathSync('/usr/bin/pg_dump'))).toBe('pg_wrapper');
    const unwrapped = pgToolPath('pg_dump', undefined, { PATH: '/usr/bin' });
    expect(unwrapped).toMatch(/^\/usr\/lib\/postgresql\/\d+\/bin\/pg_dump$/);
    expect(existsSync(unwrapped)).toBe(true);
    // The same program the wrapper chooses when a host is given (as lmsctl's connections are).
    const viaWrapper = await pgToolVersion('pg_dump', { env: { PATH: '/usr/bin', PGHOST: '127.0.0.1' } });
    const direct = await pgToolVersion('pg_dump', { binDir: path.dirname(unwrapped), env: {} });
    expect(direct).toEqual(viaWrapper);
  });

  it('takes any other program on PATH as it is, and LMS_PG_BIN_DIR before PATH', async () => {
    const own = path.join(work, 'own');
    await rm(own, { recursive: true, force: true });
    await mkdir(own);
    await writeFile(path.join(own, 'pg_restore'), '#!/bin/sh\necho "pg_restore (PostgreSQL) 99.1"\n');
    await chmod(path.join(own, 'pg_restore'), 0o755);
    await symlink(path.join(own, 'pg_restore'), path.join(own, 'psql'));
    expect(pgToolPath('pg_restore', undefined, { PATH: `${own}:/usr/bin` })).toBe(path.join(own, 'pg_restore'));
    expect(pgToolPath('psql', undefined, { PATH: `${own}:/usr/bin` })).toBe(path.join(own, 'psql'));
    expect(pgToolPath('pg_restore', '/opt/pg/bin', { PATH: `${own}:/usr/bin` })).toBe('/opt/pg/bin/pg_restore');
    expect(await pgToolVersion('pg_restore', { env: { PATH: own } })).toEqual({ version: '99.1', major: 99 });
  });

  it('leaves the bare name when no PATH entry has it, so starting it fails with the install hint', async () => {
    expect(pgToolPath('pg_dump', undefined, { PATH: work })).toBe('pg_dump');
    await expect(pgToolVersion('pg_dump', { env: { PATH: work } })).rejects.toThrow(
      /pg_dump not found on PATH: install/,
    );
  });
});
