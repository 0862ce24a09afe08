import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { withDatabase } from '../db.js';
import { freePort } from './free-port.js';
import { testServerUrl } from './test-db.js';

/**
 * Debian's PgBouncer of the caller's own, in front of the shared test server: a spare port on
 * 127.0.0.1, trust authentication, every database of the server (`*`), its config in a temp
 * folder. Nothing of the shared server changes; `stop` ends the process and removes the folder.
 */
export interface PgBouncer {
  port: number;
  /** `postgres://USER@127.0.0.1:PORT/DATABASE` of the test server's user, through PgBouncer. */
  urlOf(database: string): string;
  /** The admin console (`SHOW POOLS`, `SHOW STATS`, …): the test server's user is an admin. */
  adminUrl: string;
  /** What PgBouncer wrote to stderr, for a failing test's message. */
  log(): string;
  /** Stops PgBouncer (immediately, like SIGTERM does) and removes its folder; safe to call twice. */
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** `transaction` (default), `session` or `statement`. */
  poolMode?: 'transaction' | 'session' | 'statement';
  /** Server connections per database and user (default 4). */
  poolSize?: number;
}

/** /usr/sbin/pgbouncer (Debian's package), else `pgbouncer` on PATH. */
function pgbouncerBinary(): string {
  if (existsSync('/usr/sbin/pgbouncer')) return '/usr/sbin/pgbouncer';
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'pgbouncer'))) return path.join(dir, 'pgbouncer');
  }
  throw new Error('no pgbouncer binary (/usr/sbin/pgbouncer or on PATH): install the pgbouncer package');
}

/** Starts PgBouncer and waits until it answers; everything is removed again if that fails. */
export async function startPgBouncer(options: PgBouncerOptions = {}): Promise<PgBouncer> {
  const binary = pgbouncerBinary();
  const server = new URL(testServerUrl);
  const user = decodeURIComponent(server.username) || os.userInfo().username;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'lms-pgbouncer-'));
  // PgBouncer refuses to run as root; as root it switches to `nobody`, who must read the folder.
  await chmod(dir, 0o755);
  const port = await freePort();
  const ini = path.join(dir, 'pgbouncer.ini');
  let child: ChildProcess | undefined;
  let stderr = '';
  const killOnExit = () => child?.kill('SIGKILL');
  const stop = async () => {
    process.off('exit', killOnExit);
    const running = child;
    child = undefined;
    if (running && running.exitCode === null && running.signalCode === null) {
      const exited = new Promise((resolve) => running.once('exit', resolve));
      running.kill('SIGTERM');
      const timer = setTimeout(() => running.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await writeFile(path.join(dir, 'userlist.txt'), `"${user}" ""\n`, { mode: 0o644 });
    await writeFile(
      ini,
      [
        '[databases]',
        `* = host=${server.hostname} port=${server.port || '5432'}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'unix_socket_dir =',
        'auth_type = trust',
        `auth_file = ${path.join(dir, 'userlist.txt')}`,
        `pool_mode = ${options.poolMode ?? 'transaction'}`,
        `default_pool_size = ${options.poolSize ?? 4}`,
        'max_client_conn = 200',
        `admin_users = ${user}`,
        // node-postgres sends these as startup parameters; PgBouncer cannot keep them per client.
        'ignore_startup_parameters = extra_float_digits,statement_timeout',
        ...(process.getuid?.() === 0 ? ['user = nobody'] : []),
        '',
      ].join('\n'),
      { mode: 0o644 },
    );
    child = spawn(binary, [ini], { stdio: ['ignore', 'ignore', 'pipe'] });
    process.on('exit', killOnExit);
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const adminUrl = `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/pgbouncer`;
    await waitUntilAnswering(adminUrl, child, () => stderr);
    return {
      port,
      adminUrl,
      urlOf: (database) => withDatabase(`postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/`, database),
      log: () => stderr,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitUntilAnswering(adminUrl: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}: ${log().trim()}`);
    const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 1_000 });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query('SHOW VERSION');
      return;
    } catch (error) {
      if (Date.now() > deadline)
        throw new Error(`pgbouncer did not answer within 10 s: ${log().trim()}`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
