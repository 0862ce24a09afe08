import type pg from 'pg';
import { maybeOne, one } from '@lms/core';

export interface RefreshTokenRow {
  id: string;
  user_id: string;
  family_id: string;
  expires_at: Date;
  revoked_at: Date | null;
}

/** All SQL about refresh tokens (stored hashed, grouped in families that rotate). */
export class SessionsRepository {
  constructor(private readonly db: { primary: pg.Pool }) {}

  async insert(token: {
    userId: string;
    familyId: string;
    tokenHash: string;
    expiresAt: Date;
    userAgent?: string;
    ip?: string;
  }): Promise<string> {
    const result = await this.db.primary.query<{ id: string }>(
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

  async findByHash(tokenHash: string): Promise<RefreshTokenRow | null> {
    const result = await this.db.primary.query<RefreshTokenRow>(
      'SELECT id, user_id, family_id, expires_at, revoked_at FROM refresh_tokens WHERE token_hash = $1',
      [tokenHash],
    );
    return maybeOne(result) ?? null;
  }

  /** Marks a token used; false when it already was (a concurrent or replayed use). */
  async revokeOne(id: string): Promise<boolean> {
    const { rowCount } = await this.db.primary.query(
      'UPDATE refresh_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL',
      [id],
    );
    return rowCount === 1;
  }

  async linkReplacement(id: string, replacedBy: string): Promise<void> {
    await this.db.primary.query('UPDATE refresh_tokens SET replaced_by = $2 WHERE id = $1', [id, replacedBy]);
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
