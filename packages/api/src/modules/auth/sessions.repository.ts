import type pg from 'pg';
import { maybeOne, one, withTransaction } from '@lms/core';

export interface RefreshTokenRow {
  id: string;
  user_id: string;
  family_id: string;
  expires_at: Date;
  revoked_at: Date | null;
}

/** A refresh token to store: only its hash. */
export interface NewRefreshToken {
  userId: string;
  familyId: string;
  tokenHash: string;
  expiresAt: Date;
  userAgent?: string;
  ip?: string;
}

async function insertToken(db: pg.Pool | pg.PoolClient, token: NewRefreshToken): Promise<string> {
  const result = await db.query<{ id: string }>(
    `INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at, user_agent, ip)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
    [
      token.userId,
      token.familyId,
      token.tokenHash,
      token.expiresAt,
      token.userAgent?.slice(0, 500) ?? null,
      token.ip ?? null,
    ],
  );
  return one(result).id;
}

/** All SQL about refresh tokens (stored hashed, grouped in families that rotate). */
export class SessionsRepository {
  constructor(private readonly db: { primary: pg.Pool }) {}

  /** The first token of a new session (family). */
  async insert(token: NewRefreshToken): Promise<string> {
    return insertToken(this.db.primary, token);
  }

  /**
   * Trades a token for its replacement in one transaction: marks `usedId` used, stores the
   * replacement and links the two. A failure on the way leaves the used token as it was, still
   * valid, instead of signing the user out. Null, and nothing stored, when `usedId` was already
   * used (a concurrent or replayed use: the row lock makes the second of two wait, then miss).
   */
  async rotate(usedId: string, replacement: NewRefreshToken): Promise<string | null> {
    return withTransaction(this.db.primary, async (client) => {
      const used = await client.query(
        'UPDATE refresh_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL',
        [usedId],
      );
      if (used.rowCount !== 1) return null;
      const id = await insertToken(client, replacement);
      await client.query('UPDATE refresh_tokens SET replaced_by = $2 WHERE id = $1', [usedId, id]);
      return id;
    });
  }

  async findByHash(tokenHash: string): Promise<RefreshTokenRow | null> {
    const result = await this.db.primary.query<RefreshTokenRow>(
      'SELECT id, user_id, family_id, expires_at, revoked_at FROM refresh_tokens WHERE token_hash = $1',
      [tokenHash],
    );
    return maybeOne(result) ?? null;
  }

  /** Ends a whole session: every token of the family. */
  async revokeFamily(familyId: string): Promise<void> {
    await this.db.primary.query(
      'UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE family_id = $1',
      [familyId],
    );
  }

  async revokeAllOf(userId: string): Promise<void> {
    await this.db.primary.query(
      'UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL',
      [userId],
    );
  }
}
