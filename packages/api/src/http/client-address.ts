import { isIP } from 'node:net';
import type { Request } from 'express';

/**
 * The client's IP address as the trusted proxies report it, or the socket's peer when what they
 * pass along is not an address: Express hands back whatever text an `X-Forwarded-For` from a
 * trusted hop holds ("junk", "<script>"), which would reach the `inet` column of a session as a
 * 500, and would let the text itself choose the rate-limit bucket.
 */
export function clientAddress(req: Request): string | undefined {
  if (req.ip && isIP(req.ip)) return req.ip;
  const peer = req.socket.remoteAddress;
  return peer && isIP(peer) ? peer : undefined;
}
