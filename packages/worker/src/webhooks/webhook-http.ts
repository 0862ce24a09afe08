import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { forbiddenAddressReason, normaliseHost } from '@lms/core';
import { TargetRefusedError } from './ssrf-guard.js';

export interface WebhookRequest {
  url: string;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  /** WEBHOOK_ALLOW_PRIVATE_TARGETS: skip the SSRF guard (development and tests only). */
  allowPrivateTargets: boolean;
  signal?: AbortSignal;
}

/** How one attempt went: a response (any status) or an error before one arrived. */
export type WebhookResponse = { status: number; durationMs: number };

/** The receiver did not answer in time. */
export class WebhookTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`no response within ${Math.round(timeoutMs / 1000)} s`);
    this.name = 'WebhookTimeoutError';
  }
}

/** The subscription's URL cannot be delivered to at all (bad scheme, malformed). */
export class InvalidTargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidTargetError';
  }
}

/**
 * Resolves like `dns.lookup` with every address, refusing the connection when any of them is
 * forbidden. The socket connects to the addresses checked here, so a DNS answer that changes
 * between a check and the connection (rebinding) cannot slip through.
 */
function guardedLookup(host: string): LookupFunction {
  return (hostname, options, callback) => {
    dns.lookup(hostname, { all: true, family: options.family, hints: options.hints }, (error, addresses) => {
      if (error) return callback(error, '', 0);
      for (const { address } of addresses) {
        const reason = forbiddenAddressReason(address);
        if (reason) return callback(new TargetRefusedError(host, reason), '', 0);
      }
      if (options.all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: 'ENOTFOUND' }), '', 0);
      callback(null, first.address, first.family);
    });
  };
}

/**
 * POSTs one webhook: no redirects followed, one deadline for connect + response, the body
 * drained and dropped. Resolves with the status (whatever it is); rejects on network errors,
 * the deadline, a refused target (TargetRefusedError) or an unusable URL (InvalidTargetError).
 */
export function postWebhook(request: WebhookRequest): Promise<WebhookResponse> {
  let url: URL;
  try {
    url = new URL(request.url);
  } catch {
    return Promise.reject(new InvalidTargetError(`webhook URL is not a valid URL`));
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return Promise.reject(new InvalidTargetError(`webhook URL must be http or https, not ${url.protocol}`));
  }
  const host = normaliseHost(url.hostname);
  // Sockets skip the lookup for literal addresses, so those are checked here.
  if (!request.allowPrivateTargets && isIP(host)) {
    const reason = forbiddenAddressReason(host);
    if (reason) return Promise.reject(new TargetRefusedError(host, reason));
  }
  if (request.signal?.aborted) return Promise.reject(request.signal.reason as Error);
  const started = performance.now();
  const client = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, {
      method: 'POST',
      headers: { ...request.headers, 'content-length': String(Buffer.byteLength(request.body)) },
      // A fresh connection per delivery: pooled sockets would bypass the lookup guard.
      agent: false,
      ...(request.allowPrivateTargets ? {} : { lookup: guardedLookup(host) }),
    });
    const timer = setTimeout(() => req.destroy(new WebhookTimeoutError(request.timeoutMs)), request.timeoutMs);
    const onAbort = () =>
      req.destroy(request.signal?.reason instanceof Error ? request.signal.reason : new Error('aborted'));
    request.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = () => {
      clearTimeout(timer);
      request.signal?.removeEventListener('abort', onAbort);
    };
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => {
        finish();
        resolve({ status: res.statusCode ?? 0, durationMs: Math.round(performance.now() - started) });
      });
      res.on('error', (error) => {
        finish();
        reject(error);
      });
    });
    req.on('error', (error) => {
      finish();
      reject(error);
    });
    req.end(request.body);
  });
}
