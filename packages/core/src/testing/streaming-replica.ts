import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from './free-port.js';

const run = promisify(execFile);

/**
 * A primary and a hot standby streaming from it, both of the caller's own: initdb on a spare
 * port, `pg_basebackup -R` for the standby, `pg_ctl` on another spare port, all in one temp
 * folder. The shared test server is never touched (its settings, its WAL, its restarts).
 * As root the server binaries run as the `postgres` user: PostgreSQL refuses to run as root.
 */
export interface StreamingReplica {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` of the primary (trust auth). */
  primaryUrl: string;
  /** The same for the standby. */
  replicaUrl: string;
  /** `pg_ctl stop -m fast` on the standby: its connections close, new ones are refused. */
  stopReplica(): Promise<void>;
  /** Starts the standby again and waits until it accepts connections. */
  startReplica(): Promise<void>;
  /** `pg_wal_replay_pause()`: the standby keeps receiving WAL and answering, but stands still. */
  pauseReplay(): Promise<void>;
  resumeReplay(): Promise<void>;
  /** Waits until the standby has replayed everything the primary had written when it was called. */
  caughtUp(timeoutMs?: number): Promise<void>;
  /** Stops both servers whatever their state and removes the folder; safe to call twice. */
  destroy(): Promise<void>;
}

/** Debian's newest /usr/lib/postgresql/N/bin with pg_basebackup, else the folder on PATH that has it. */
async function serverBinDir(): Promise<string> {
  const needed = ['initdb', 'pg_ctl', 'pg_basebackup'];
  const complete = (dir: string) => needed.every((name) => existsSync(path.join(dir, name)));
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = (await readdir(debian))
      .filter((entry) => /^\d+$/.test(entry))
      .sort((a, b) => Number(b) - Number(a));
    for (const version of versions)
      if (complete(path.join(debian, version, 'bin'))) return path.join(debian, version, 'bin');
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) if (dir && complete(dir)) return dir;
  throw new Error(
    'no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) under /usr/lib/postgresql or on PATH: install the postgresql package',
  );
}

/** The `postgres` user's ids when running as root, else null (the binaries run as the caller). */
async function serverUser(): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

async function query<T extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** Starts a primary and a standby of it; everything is removed again if any step fails. */
export async function startStreamingReplica(): Promise<StreamingReplica> {
  const binDir = await serverBinDir();
  const user = await serverUser();
  // Under the system temp folder, which the postgres user can pass through.
  const root = await mkdtemp(path.join(os.tmpdir(), 'lms-replica-'));
  if (user) await chown(root, user.uid, user.gid);
  const primaryDir = path.join(root, 'primary');
  const replicaDir = path.join(root, 'replica');
  const [primaryPort, replicaPort] = [await freePort(), await freePort()];
  const tool = (name: string, args: string[]) =>
    run(path.join(binDir, name), args, { cwd: root, ...(user ?? {}), env: { ...process.env, LC_ALL: 'C' } });
  const serverOptions = (port: number) =>
    // fsync off: the data is thrown away; the tests measure replication, not durability.
    `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB -c max_connections=60`;
  const start = (dir: string, port: number, log: string) =>
    tool('pg_ctl', ['-D', dir, '-l', path.join(root, log), '-w', '-t', '60', '-o', serverOptions(port), 'start']);
  const postmasterPid = async (dir: string): Promise<number | null> => {
    const text = await readFile(path.join(dir, 'postmaster.pid'), 'utf8').catch(() => null);
    const pid = Number(text?.split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  };
  const stopHard = async (dir: string) => {
    const pid = await postmasterPid(dir);
    if (pid === null) return;
    await tool('pg_ctl', ['-D', dir, '-m', 'immediate', '-w', '-t', '30', 'stop']).catch(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    });
  };

  const primaryUrl = `postgres://postgres@127.0.0.1:${primaryPort}/postgres`;
  const replicaUrl = `postgres://postgres@127.0.0.1:${replicaPort}/postgres`;
  const pair: StreamingReplica = {
    primaryUrl,
    replicaUrl,
    async stopReplica() {
      await tool('pg_ctl', ['-D', replicaDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    },
    async startReplica() {
      await start(replicaDir, replicaPort, 'replica.log');
    },
    async pauseReplay() {
      await query(replicaUrl, 'SELECT pg_wal_replay_pause()');
    },
    async resumeReplay() {
      await query(replicaUrl, 'SELECT pg_wal_replay_resume()');
    },
    async caughtUp(timeoutMs = 20_000) {
      const [{ lsn }] = (await query<{ lsn: string }>(primaryUrl, 'SELECT pg_current_wal_lsn()::text AS lsn')) as [
        { lsn: string },
      ];
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const [row] = await query<{ done: boolean }>(
          replicaUrl,
          'SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS done',
          [lsn],
        );
        if (row?.done) return;
        if (Date.now() > deadline) throw new Error(`the standby did not replay up to ${lsn} within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async destroy() {
      await Promise.all([stopHard(replicaDir), stopHard(primaryDir)]);
      await rm(root, { recursive: true, force: true });
    },
  };

  try {
    // initdb's pg_hba.conf trusts replication connections from 127.0.0.1, and PostgreSQL 10+
    // defaults to wal_level=replica with WAL senders available: a plain cluster can be a primary.
    await tool('initdb', ['-D', primaryDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    await start(primaryDir, primaryPort, 'primary.log');
    // -R writes standby.signal and primary_conninfo; -X stream copies the WAL written meanwhile.
    await tool('pg_basebackup', [
      '-h',
      '127.0.0.1',
      '-p',
      String(primaryPort),
      '-U',
      'postgres',
      '-D',
      replicaDir,
      '-R',
      '-X',
      'stream',
      '--checkpoint=fast',
      '--no-sync',
    ]);
    await start(replicaDir, replicaPort, 'replica.log');
    return pair;
  } catch (error) {
    await pair.destroy();
    throw error;
  }
}
