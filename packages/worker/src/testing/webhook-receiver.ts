import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One POST the receiver got, with the outcome of its own signature check. */
export interface ReceivedWebhook {
  headers: http.IncomingHttpHeaders;
  body: string;
  json: unknown;
  signatureValid: boolean;
}

export interface WebhookReceiver {
  url: string;
  requests: ReceivedWebhook[];
  /** Statuses to answer, in order; once used up, 200. */
  respondWith(...statuses: number[]): void;
  /** Hold every answer this long (a slow or hanging receiver). */
  delayMs: number;
  waitForRequests(count: number, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

/**
 * The check a subscriber writes, done here independently of the worker's code:
 * `X-LMS-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 */
export function receiverVerifies(header: string | undefined, secret: string, body: string): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!match) return false;
  if (Math.abs(Date.now() / 1000 - Number(match[1])) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${match[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2]!, 'hex'));
}

/** A node:http webhook receiver on 127.0.0.1 that checks signatures with `secret`. */
export async function startWebhookReceiver(secret: string): Promise<WebhookReceiver> {
  const requests: ReceivedWebhook[] = [];
  const statuses: number[] = [];
  const receiver = {
    url: '',
    requests,
    delayMs: 0,
    respondWith(...codes: number[]) {
      statuses.push(...codes);
    },
    async waitForRequests(count: number, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (requests.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} webhook requests, received ${requests.length}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      return requests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      requests.push({
        headers: req.headers,
        body,
        json: JSON.parse(body) as unknown,
        signatureValid: receiverVerifies(req.headers['x-lms-signature'] as string | undefined, secret, body),
      });
      const status = statuses.shift() ?? 200;
      setTimeout(() => res.writeHead(status, { 'content-type': 'text/plain' }).end('ok'), receiver.delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/lms`;
  return receiver;
}
