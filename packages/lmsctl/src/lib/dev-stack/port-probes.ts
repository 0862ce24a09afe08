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

/** A port the dev stack keeps to itself until its own process is about to listen there. */
export interface HeldPort {
  release(): Promise<void>;
}

/**
 * Listens on `host:port` itself, so nothing else can take the port while PostgreSQL, Redis and
 * the migrations get ready; fails, naming the port and the variable that sets it, when something
 * already listens there (on Linux also on another address of the same port, which would make the
 * API or the worker fail the same way). Connections meanwhile are closed at once.
 */
export async function holdPort(port: number, host: string, variable: string): Promise<HeldPort> {
  const server = net.createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES')
      throw new CliError(
        ExitCode.failed,
        `port ${port} (${variable}) is ${code === 'EACCES' ? 'not open to this user' : 'already in use'}`,
        `stop what listens there (an API or worker still running?), or set ${variable} to a free port`,
      );
    if (code === 'EADDRNOTAVAIL')
      throw new CliError(
        ExitCode.usage,
        `--host ${host} is not an address of this machine`,
        'use 127.0.0.1 (the default), 0.0.0.0 for every interface, or one of its own addresses',
      );
    throw error;
  }
  let released: Promise<void> | null = null;
  return {
    release: () => (released ??= new Promise((resolve) => server.close(() => resolve()))),
  };
}
