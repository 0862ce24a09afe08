import { UnauthorizedError, type Logger } from '@lms/core';
import type { RedisClient } from '@lms/core/redis-client';
import type { AuthUser } from '../../lib/auth-user.js';

/**
 * The deny-list that ends access tokens before they expire, kept in Redis so every API process
 * sees it: `revoked-session:{<sid>}` for a session ended by logout or refresh-token reuse, and
 * `tokens-not-before:{<userId>}` (epoch ms) for an account deactivated or given another role.
 * Each entry lives as long as an access token, so it outlasts every token it refuses and then
 * goes away on its own. The braces are Redis Cluster hash tags: the entries spread over the
 * shards, so a check reads them with one GET each rather than one MGET.
 *
 * While Redis does not answer, tokens are checked by signature and expiry alone (fail open):
 * the API keeps serving signed-in users through a Redis outage, as it does for rate limits and
 * jobs (the outbox), and a revocation then holds for at most ACCESS_TOKEN_TTL, as before the
 * deny-list. A warning is logged when checking stops and a note when it resumes.
 */
export class TokenRevocations {
  private unreachable = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly prefix: string,
    /** ACCESS_TOKEN_TTL in ms: no token outlives an entry written now. */
    private readonly ttlMs: number,
    private readonly logger: Logger,
  ) {}

  /** Refuses every access token of a session from now on (logout, reuse detection). */
  async endSession(sessionId: string): Promise<void> {
    await this.write(this.sessionKey(sessionId), '1', { sessionId });
  }

  /**
   * Refuses every access token of `userId` issued before now (deactivation, role change). Call it
   * after the change is committed: a token issued later was signed from the changed row.
   */
  async refuseTokensIssuedBefore(userId: string, at: Date = new Date()): Promise<void> {
    await this.write(this.userKey(userId), String(at.getTime()), { userId });
  }

  private sessionKey(sessionId: string): string {
    return `${this.prefix}revoked-session:{${sessionId}}`;
  }

  private userKey(userId: string): string {
    return `${this.prefix}tokens-not-before:{${userId}}`;
  }

  /** UnauthorizedError when the token's session was ended or its account changed after it was issued. */
  async check(user: AuthUser, issuedAtMs: number): Promise<void> {
    const keys = [this.userKey(user.id)];
    if (user.sessionId) keys.push(this.sessionKey(user.sessionId));
    let values: (string | null)[];
    try {
      values = await Promise.all(keys.map((key) => this.redis.get(key)));
    } catch (error) {
      if (!this.unreachable) {
        this.unreachable = true;
        this.logger.warn(
          { err: error },
          'token deny-list unreachable: access tokens are checked by signature and expiry only until Redis answers',
        );
      }
      return;
    }
    if (this.unreachable) {
      this.unreachable = false;
      this.logger.info('token deny-list reachable again: revoked access tokens are refused again');
    }
    const [notBefore, sessionRevoked] = values;
    if (sessionRevoked !== null && sessionRevoked !== undefined) {
      throw new UnauthorizedError('this session was ended; sign in again');
    }
    if (notBefore !== null && notBefore !== undefined && issuedAtMs < Number(notBefore)) {
      throw new UnauthorizedError('access token was revoked by a change to the account; refresh it or sign in again');
    }
  }

  /**
   * The revocation in PostgreSQL is already committed when this runs; if Redis cannot take the
   * entry, the change stands and only the access tokens already out live on to their expiry.
   */
  private async write(key: string, value: string, context: Record<string, string>): Promise<void> {
    try {
      await this.redis.set(key, value, 'PX', this.ttlMs);
    } catch (error) {
      this.logger.warn(
        { err: error, ...context },
        'could not add to the token deny-list (Redis unreachable): access tokens already issued stay valid until they expire',
      );
    }
  }
}
