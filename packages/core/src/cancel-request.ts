import net from 'node:net';
import type pg from 'pg';

/** The CancelRequest code of the PostgreSQL wire protocol (1234 in the high 16 bits, 5678 in the low). */
const CANCEL_REQUEST_CODE = 80_877_102;

/** What node-postgres keeps of a connection that its types do not declare. */
interface ConnectedClient {
  host: string;
  port: number;
  processID: number | null;
  secretKey: number | null;
}

/**
 * Asks the server to cancel the statement `client` is running, the way psql's Ctrl+C does: a
 * CancelRequest with the connection's process id and secret key, sent on a connection of its
 * own to the address `client` connected to. Unlike `pg_cancel_backend(pid)` it takes no pool
 * connection (a pool used up by stuck statements cannot run the cancel), and it works through
 * PgBouncer: PgBouncer gives each client a key of its own and forwards the request to the
 * server connection that client's transaction runs on, whereas the pid a client sees behind it is
 * made up. Best effort: resolves when the server has closed the request's connection, on any
 * error, or after `timeoutMs`; a statement that already finished is not affected.
 */
export function cancelRunningStatement(client: pg.ClientBase, timeoutMs = 5_000): Promise<void> {
  const { host, port, processID, secretKey } = client as unknown as ConnectedClient;
  if (processID === null || secretKey === null) return Promise.resolve();
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
  packet.writeInt32BE(processID, 8);
  packet.writeInt32BE(secretKey, 12);
  return new Promise((resolve) => {
    // Unix-domain sockets are named like libpq names them: DIR/.s.PGSQL.PORT.
    const socket = host.startsWith('/')
      ? net.connect(`${host}/.s.PGSQL.${port}`)
      : net.connect({ host, port, timeout: timeoutMs });
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    // Written without closing our side, as libpq does: PgBouncer takes an end of input before it
    // has forwarded the request as the client giving up, and drops the request.
    socket.once('connect', () => socket.write(packet));
    socket.once('close', done);
    socket.once('error', done);
    socket.once('timeout', done);
  });
}
