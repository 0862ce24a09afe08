import net from 'node:net';
import { CliError, ExitCode } from '../../errors.js';

/** True when something accepts a TCP connection on `host:port` within half a second. */
export async function portAnswers(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 500 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** A port on 127.0.0.1 that nothing listens on right now (the OS picks it). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Fails, naming the port and the variable that sets it, when something already listens on it.
 * The probe binds the way the API and the worker do (every interface), then lets go at once.
 */
export async function assertPortFree(port: number, variable: string): Promise<void> {
  const probe = net.createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      probe.once('error', reject);
      probe.listen(port, () => resolve());
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    throw new CliError(
      ExitCode.failed,
      `port ${port} (${variable}) is already in use`,
      `stop what listens there (an API or worker still running?), or set ${variable} to a free port`,
    );
  }
  await new Promise((resolve) => probe.close(resolve));
}
