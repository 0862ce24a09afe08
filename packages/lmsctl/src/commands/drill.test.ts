import http from 'node:http';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectClient, withDatabase } from '@lms/core';
import { createTestDatabase, listDatabases, type TestDatabase } from '@lms/core/testing';
import { manifestPathOf, signManifest, type BackupManifest } from '../backup/archive/manifest.js';
import { fakePgBinDir, projectMigrations, publicTableCount, seedLmsDatabase } from '../testing/backup-fixtures.js';
import { testContext } from '../testing/context.js';
import { runLmsctl, spawnLmsctl } from '../testing/run-cli.js';
import { backup } from '../backup/create.js';
import { drill, type DrillReport } from '../backup/drill.js';
import { drillExitError } from './drill.js';

let database: TestDatabase;
let work: string;

beforeAll(async () => {
  database = await createTestDatabase('drill');
  await seedLmsDatabase(database.url, { users: 30 });
  work = await mkdtemp(path.join(os.tmpdir(), 'lmsctl-drill-'));
});

afterAll(async () => {
  await database.drop();
  await rm(work, { recursive: true, force: true });
});

async function setup(name: string, extra: Record<string, string> = {}) {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  const env = {
    DATABASE_URL: database.url,
    LMS_BACKUP_DIR: path.join(dir, 'db'),
    LMS_DRILL_DIR: path.join(dir, 'drills'),
    LMS_METRICS_TEXTFILE_DIR: dir,
    ...extra,
  };
  return { dir, env, ctx: () => testContext({ cwd: work, env }).ctx };
}

/**
 * The scratch databases of drills of this file's database: found by the marker a drill writes
 * on its scratch database, so another drill on a shared server is none of this test's business.
 */
async function drillDatabases(): Promise<string[]> {
  const admin = await connectClient(withDatabase(database.url, 'postgres'));
  try {
    const { rows } = await admin.query<{ datname: string }>(
      `SELECT datname FROM pg_database
        WHERE starts_with(datname, 'lms_drill_')
          AND shobj_description(oid, 'pg_database') LIKE '{"lmsctl":"drill"%'
          AND shobj_description(oid, 'pg_database')::jsonb ->> 'target' = $1
        ORDER BY datname`,
      [database.name],
    );
    return rows.map((row) => row.datname);
  } finally {
    await admin.end();
  }
}

async function readReport(file: string): Promise<DrillReport> {
  return JSON.parse(await readFile(file, 'utf8')) as DrillReport;
}

describe('lmsctl drill', () => {
  it('passes a good backup, writes both reports and the metrics, and drops the scratch database', async () => {
    const { dir, ctx, env } = await setup('good');
    await backup(ctx());
    const result = await drill(ctx());
    expect(result.report.verdict).toBe('pass');
    expect(drillExitError(result)).toBeNull();
    expect(path.basename(result.reportPath)).toMatch(/^drill_\d{8}_\d{6}\.json$/);
    const report = await readReport(result.reportPath);
    expect(report.checks.filter((check) => check.kind === 'rows')).toHaveLength(await publicTableCount(database.url));
    expect(report.checks.find((check) => check.name === 'rows of public.users')).toMatchObject({
      expected: 30,
      found: 30,
      ok: true,
    });
    expect(report.checks.filter((check) => check.kind === 'foreign-key').length).toBeGreaterThanOrEqual(20);
    expect(report.checks.find((check) => check.kind === 'migration')).toMatchObject({
      expected: (await projectMigrations()).latest.id.slice(0, 4),
      found: (await projectMigrations()).latest.id.slice(0, 4),
    });
    expect(report.checks.find((check) => check.name === 'published courses')).toMatchObject({
      found: '3 of 3',
      ok: true,
    });
    expect(report.rowsChecked).toBeGreaterThan(30);
    expect(report.scratch.kept).toBe(false);
    const markdown = await readFile(result.markdownPath, 'utf8');
    expect(markdown).toMatch(/^# Restore drill .* — PASS/);
    expect(markdown).toContain('| ✅ | rows of public.users | 30 | 30 |');
    expect(await drillDatabases()).toEqual([]);

    const drillMetrics = await readFile(path.join(dir, 'lms_drill.prom'), 'utf8');
    expect(drillMetrics).toContain(`lms_drill_last_status{database="${database.name}"} 1`);
    expect(drillMetrics).toMatch(
      new RegExp(`lms_drill_rows_checked\\{database="${database.name}"\\} ${report.rowsChecked}\\n`),
    );
    expect(drillMetrics).toMatch(/lms_drill_last_success_timestamp_seconds\{[^}]*\} 1\d{9}/);
    expect(drillMetrics).toMatch(/lms_drill_duration_seconds\{[^}]*\} \d/);
    const backupMetrics = await readFile(path.join(dir, 'lms_backup.prom'), 'utf8');
    expect(backupMetrics).toMatch(/lms_backup_last_success_timestamp_seconds\{[^}]*\} 1\d{9}/);
    expect(backupMetrics).toMatch(/lms_backup_size_bytes\{[^}]*\} \d+/);

    // And from the real binary: exit 0 and a JSON report on stdout.
    const run = await runLmsctl(['drill', '--json'], { env, cwd: work });
    expect(run.exitCode, run.stderr).toBe(0);
    expect((JSON.parse(run.stdout) as { report: DrillReport }).report.verdict).toBe('pass');
  });

  it('fails (exit 3) naming the table and both counts when the rows differ from the manifest', async () => {
    const { ctx, env } = await setup('mismatch');
    const made = await backup(ctx());
    // The manifest says one more user than the dump holds (as if rows vanished after the export), re-signed.
    const manifest = JSON.parse(await readFile(manifestPathOf(made.file), 'utf8')) as BackupManifest;
    const { signature: _signature, ...body } = manifest;
    body.tables!['public.users'] = 31;
    await writeFile(manifestPathOf(made.file), JSON.stringify(signManifest(body)));

    const run = await runLmsctl(['drill'], { env, cwd: work });
    expect(run.exitCode).toBe(3);
    expect(run.stdout).toContain('rows of public.users: expected 31, found 30');
    expect(run.stderr).toContain('error: drill failed: rows of public.users: expected 31, found 30');
    expect(await drillDatabases()).toEqual([]);
    const reports = (await readdir(env.LMS_DRILL_DIR)).filter((name) => name.endsWith('.json'));
    expect((await readReport(path.join(env.LMS_DRILL_DIR, reports[0]!))).verdict).toBe('fail');
    expect(await readFile(path.join(env.LMS_METRICS_TEXTFILE_DIR, 'lms_drill.prom'), 'utf8')).toContain(
      `lms_drill_last_status{database="${database.name}"} 0`,
    );
  });

  it('fails a corrupt backup with exit 3 without ever creating a scratch database', async () => {
    const { ctx, env } = await setup('corrupt');
    const made = await backup(ctx());
    const bytes = await readFile(made.file);
    bytes[bytes.length - 100]! ^= 0xff;
    await writeFile(made.file, bytes);
    const created: string[] = [];
    const watcher = setInterval(() => {
      void drillDatabases().then((names) => created.push(...names));
    }, 20);
    try {
      const run = await runLmsctl(['drill'], { env, cwd: work });
      expect(run.exitCode).toBe(3);
      expect(run.stdout).toContain('backup verifies: expected checksum, manifest and archive intact, found');
    } finally {
      clearInterval(watcher);
    }
    expect(created).toEqual([]);
    // The report says so too (the watcher above only sees a scratch database once it is marked).
    const reports = (await readdir(env.LMS_DRILL_DIR)).filter((name) => name.endsWith('.json'));
    const report = await readReport(path.join(env.LMS_DRILL_DIR, reports[0]!));
    expect(report.scratch.created).toBe(false);
  });

  it('finds orphans behind a foreign key that was never validated', async () => {
    const orphaned = await createTestDatabase('drill_orphans');
    try {
      await seedLmsDatabase(orphaned.url, { users: 10 });
      const client = await connectClient(orphaned.url);
      await client.query(`ALTER TABLE enrollments DROP CONSTRAINT enrollments_course_id_fkey`);
      await client.query(`DELETE FROM courses WHERE id = (SELECT course_id FROM enrollments LIMIT 1)`);
      await client.query(
        `ALTER TABLE enrollments ADD CONSTRAINT enrollments_course_id_fkey FOREIGN KEY (course_id) REFERENCES courses (id) NOT VALID`,
      );
      await client.end();
      const { ctx } = await setup('orphans', { DATABASE_URL: orphaned.url });
      await backup(ctx());
      const result = await drill(ctx());
      expect(result.report.verdict).toBe('fail');
      const check = result.report.checks.find((entry) => entry.name.startsWith('enrollments_course_id_fkey'));
      expect(check).toMatchObject({ expected: 0, ok: false });
      expect(check!.found).toBeGreaterThan(0);
    } finally {
      await orphaned.drop();
    }
  });

  it('warns about a missed RPO, and fails on it with --strict', async () => {
    const { ctx } = await setup('rpo');
    await backup(ctx());
    const lenient = await drill(ctx(), { rpo: 1 });
    expect(lenient.report.verdict).toBe('pass');
    expect(lenient.report.warnings.join()).toContain('backup age within the RPO');
    const strict = await drill(ctx(), { rpo: 1, strict: true });
    expect(strict.report.verdict).toBe('fail');
    expect(drillExitError(strict)?.exitCode).toBe(3);
  });

  it('keeps the scratch database with --keep-scratch', async () => {
    const { ctx } = await setup('keep');
    await backup(ctx());
    const result = await drill(ctx(), { keepScratch: true });
    try {
      expect(result.report.scratch.kept).toBe(true);
      expect(await listDatabases(result.report.scratch.database)).toEqual([result.report.scratch.database]);
    } finally {
      const admin = await connectClient(withDatabase(database.url, 'postgres'));
      await admin.query(`DROP DATABASE ${admin.escapeIdentifier(result.report.scratch.database)}`);
      await admin.end();
    }
  });

  it('reports a drill that could not run (exit 1) with verdict error', async () => {
    const { ctx, env } = await setup('unreachable');
    await backup(ctx());
    // --from-database: the backups of the test database, drilled on a server that does not answer.
    const run = await runLmsctl(
      ['drill', '--database-url', 'postgres://root@127.0.0.1:1/postgres', '--from-database', database.name],
      { env, cwd: work },
    );
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('error: drill could not run: cannot connect to PostgreSQL at 127.0.0.1:1');
  });

  it('drops the scratch database when interrupted (SIGTERM) mid-restore', async () => {
    // A pg_restore that lingers before restoring (not when listing), so the signal lands mid-drill.
    const bin = await fakePgBinDir({
      pg_restore: `case " $* " in *" --list "*) ;; *) trap 'kill $!; exit 143' TERM; sleep 30 & wait $!;; esac\nexec "$REAL" "$@"`,
    });
    try {
      const { ctx, env } = await setup('interrupted', { LMS_PG_BIN_DIR: bin });
      await backup(ctx());
      const child = spawnLmsctl(['drill'], { env, cwd: work });
      for (let waited = 0; (await drillDatabases()).length === 0 && waited < 20_000; waited += 50) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await drillDatabases()).toHaveLength(1);
      child.kill('SIGTERM');
      const run = await child;
      expect(run.exitCode, String(run.stderr)).toBe(1);
      expect(String(run.stderr)).toContain('drill could not run: interrupted by SIGTERM');
      expect(await drillDatabases()).toEqual([]);
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  it('pushes the metrics to a Pushgateway', async () => {
    const received: Array<{ method: string; url: string; body: string }> = [];
    const gateway = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        received.push({ method: request.method ?? '', url: request.url ?? '', body });
        response.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
    try {
      const port = (gateway.address() as { port: number }).port;
      const { ctx } = await setup('push', { PUSHGATEWAY_URL: `http://127.0.0.1:${port}` });
      await backup(ctx());
      await drill(ctx());
      expect(received.map((entry) => `${entry.method} ${entry.url}`)).toEqual([
        `POST /metrics/job/lmsctl/kind/backup/database/${database.name}`,
        `POST /metrics/job/lmsctl/kind/drill/database/${database.name}`,
      ]);
      expect(received[1]!.body).toContain('lms_drill_last_status{database=');
    } finally {
      gateway.close();
    }
  });
});
