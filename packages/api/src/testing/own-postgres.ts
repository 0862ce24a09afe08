import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@lms/core/testing';

const run = promisify(execFile);

/**
 * A PostgreSQL server of a test's own (initdb in a temp folder, a spare port on 127.0.0.1), for
 * tests that stop, restart or freeze the database under a running API — which the shared test
 * server must never be.
 */
export interface OwnPostgres {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth). */
  url: string;
  /** `pg_ctl start`, waiting until it accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl stop -m fast`: connections are closed, new ones refused. */
  stop(): Promise<void>;
  /**
   * SIGSTOP to the postmaster and every process it started (backends, checkpointer, …): the
   * server keeps its sockets open and answers nothing, like a host that hangs or a storage stall.
   * Each child runs in a session of its own, so one signal to a process group would miss them.
   */
  freeze(): Promise<void>;
  /** SIGCONT to the same processes. */
  thaw(): void;
  /** Stops the server whatever state it is in and removes its folder; safe to call twice. */
  destroy(): Promise<void>;
}

/** Where the server's binaries are: Debian's newest /usr/lib/postgresql/N/bin, else PATH. */
async function findBinDir(): Promise<string> {
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = (await readdir(debian))
      .filter((entry) => /^\d+$/.test(entry) && existsSync(path.join(debian, entry, 'bin', 'pg_ctl')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return path.join(debian, versions[0], 'bin');
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'pg_ctl')) && existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new Error('no PostgreSQL server binaries (initdb, pg_ctl) found under /usr/lib/postgresql or on PATH');
}

/** PostgreSQL refuses to run as root: as root, the binaries run as the `postgres` user. */
async function runAs(): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

/** Signals a process that may already be gone. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Initialises and starts a server of the caller's own. */
export async function startOwnPostgres(): Promise<OwnPostgres> {
  const binDir = await findBinDir();
  const user = await runAs();
  // Under the system temp folder, which the postgres user can pass through (a checkout under a
  // 0700 home could not be).
  const root = await mkdtemp(path.join(os.tmpdir(), 'lms-own-pg-'));
  if (user) await chown(root, user.uid, user.gid);
  const dataDir = path.join(root, 'data');
  const port = await freePort();
  const tool = (name: string, args: string[]) =>
    run(path.join(binDir, name), args, { cwd: root, ...(user ?? {}), env: { ...process.env, LC_ALL: 'C' } });

  const postmasterPid = async (): Promise<number | null> => {
    const text = await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => null);
    const pid = Number(text?.split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  };
  /** The postmaster and its children (ps -A works the same on Linux and macOS). */
  const serverProcesses = async (postmaster: number): Promise<number[]> => {
    const { stdout } = await run('ps', ['-A', '-o', 'pid=', '-o', 'ppid=']);
    const children = stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/).map(Number))
      .filter(([, ppid]) => ppid === postmaster)
      .map(([pid]) => pid!);
    return [postmaster, ...children];
  };
  let frozen: number[] = [];

  const server: OwnPostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start() {
      await tool('pg_ctl', [
        '-D',
        dataDir,
        '-l',
        path.join(root, 'server.log'),
        '-w',
        '-t',
        '60',
        '-o',
        `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB`,
        'start',
      ]);
    },
    async stop() {
      await tool('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    },
    async freeze() {
      const pid = await postmasterPid();
      if (pid === null) throw new Error('the server is not running: nothing to freeze');
      // The postmaster first, so it forks nothing new while its children are listed.
      signal(pid, 'SIGSTOP');
      frozen = await serverProcesses(pid);
      for (const each of frozen) signal(each, 'SIGSTOP');
    },
    thaw() {
      for (const each of [...frozen].reverse()) signal(each, 'SIGCONT');
      frozen = [];
    },
    async destroy() {
      server.thaw();
      const pid = await postmasterPid();
      if (pid !== null) {
        await tool('pg_ctl', ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop']).catch(() =>
          signal(pid, 'SIGKILL'),
        );
      }
      await rm(root, { recursive: true, force: true });
    },
  };

  try {
    await tool('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
    await server.start();
    return server;
  } catch (error) {
    await server.destroy();
    throw error;
  }
}
