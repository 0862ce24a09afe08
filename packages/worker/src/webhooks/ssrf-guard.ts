/** The target resolved to an address webhooks may not reach: a permanent failure, never retried. */
export class TargetRefusedError extends Error {
  constructor(host: string, reason: string) {
    super(`refused webhook target ${host}: ${reason} (set WEBHOOK_ALLOW_PRIVATE_TARGETS=true outside production)`);
    this.name = 'TargetRefusedError';
  }
}
