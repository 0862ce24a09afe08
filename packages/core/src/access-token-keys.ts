import { createHmac } from 'node:crypto';

const KEY_ID_LABEL = 'lms-access-token-key-id';

/**
 * The `kid` of access tokens signed with `secret` (SECRET_KEY or SECRET_KEY_PREVIOUS): the first
 * 8 bytes of HMAC-SHA256(secret, label) as 16 hex characters. It names the key without revealing
 * it, so the API can pick the key a token needs and `lmsctl status` can show which keys are live;
 * it is in every token's header and safe to log.
 */
export function accessTokenKeyId(secret: string): string {
  return createHmac('sha256', secret).update(KEY_ID_LABEL).digest().subarray(0, 8).toString('hex');
}
