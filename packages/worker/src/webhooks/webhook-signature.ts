import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * `X-LMS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
 * subscription's secret. Signing the timestamp with the body lets receivers refuse replays of
 * an old delivery.
 */
export function signatureHeader(secret: string, body: string, timestampSeconds: number): string {
  const digest = createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex');
  return `t=${timestampSeconds},v1=${digest}`;
}

/**
 * What a receiver does with the header: recompute the HMAC and compare in constant time, and
 * refuse timestamps further than `toleranceSeconds` from now.
 */
export function verifySignatureHeader(
  header: string,
  secret: string,
  body: string,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): boolean {
  const parts = Object.fromEntries(
    header.split(',').map((part) => {
      const index = part.indexOf('=');
      return [part.slice(0, index).trim(), part.slice(index + 1).trim()];
    }),
  );
  const timestamp = Number(parts.t);
  if (!Number.isInteger(timestamp) || typeof parts.v1 !== 'string' || !/^[0-9a-f]{64}$/.test(parts.v1)) return false;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) return false;
  const expected = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(parts.v1, 'hex'));
}

/**
 * `X-LMS-Delivery`: the same UUID-shaped id on every attempt of one event to one subscription,
 * so receivers can drop the repeats that at-least-once delivery implies.
 */
export function deliveryId(subscriptionId: string, eventId: string): string {
  const hex = createHash('sha256').update(`${subscriptionId}/${eventId}`).digest('hex');
  // Version 8 (custom) and the RFC 9562 variant bits keep it a well-formed UUID.
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
