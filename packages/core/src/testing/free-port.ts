import net from 'node:net';

/**
 * A TCP port on 127.0.0.1 that nobody listens on right now, for a server a test starts in a
 * child process (which cannot be handed port 0 and report back). The port is released before
 * returning, so another process could take it in between; the OS hands out ephemeral ports in
 * turn, which keeps that rare.
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
