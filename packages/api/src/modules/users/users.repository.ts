import type pg from 'pg';
import { maybeOne, one, withTransaction, type Queryable } from '@lms/core';
import { keysetPage, type Cursor, type KeysetRow } from '../../lib/pagination.js';
import type { Role } from '../../lib/auth-user.js';
import type { LaggingReads } from '../../db/read-router.js';

export interface UserRow {
  id: string;
  email: string;
  name: string;
  password_hash: string;
  role: Role;
  active: boolean;
  created_at: Date;
  last_login_at: Date | null;
}

const COLUMNS = 'id, email, name, password_hash, role, active, created_at, last_login_at';

/** Rolls back a change that would leave no active admin; never leaves the repository. */
class WouldRemoveLastAdmin extends Error {}

/** All SQL about users. Lookups for sign-in, tokens and changes use the primary; only the admin list may use the replica. */
export class UsersRepository {
  constructor(private readonly db: { primary: pg.Pool; read: LaggingReads }) {}

  async findByEmail(email: string): Promise<UserRow | null> {
    const result = await this.db.primary.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE email = $1`, [email]);
    return maybeOne(result) ?? null;
  }

  async findById(id: string): Promise<UserRow | null> {
    const result = await this.db.primary.query<UserRow>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
    return maybeOne(result) ?? null;
  }

  /** Inserts a user; null when the e-mail address is taken. */
  /** Inserts a user (null when the e-mail is taken); `db` is the primary, or the caller's transaction. */
  async insert(
    user: { email: string; name: string; passwordHash: string; role: Role },
    db: Queryable = this.db.primary,
  ): Promise<UserRow | null> {
    const result = await db.query<UserRow>(
      `INSERT INTO users (email, name, password_hash, role) VALUES ($1, $2, $3, $4)
       ON CONFLICT (email) DO NOTHING RETURNING ${COLUMNS}`,
      [user.email, user.name, user.passwordHash, user.role],
    );
    return maybeOne(result) ?? null;
  }

  async recordLogin(id: string): Promise<void> {
    await this.db.primary.query('UPDATE users SET last_login_at = now(), last_active_at = now() WHERE id = $1', [id]);
  }

  /**
   * Newest first, `limit + 1` rows (the extra one tells whether there is a next page), as
   * `reader` (the admin asking) may see them: from the replica unless they changed something lately.
   */
  async list(limit: number, after: Cursor | null, reader: string): Promise<Array<UserRow & KeysetRow>> {
    const page = keysetPage({ sort: 'created_at', id: 'id', after, limit });
    const { rows } = await this.db.read.query<UserRow & KeysetRow>(
      `SELECT ${COLUMNS}, ${page.key} FROM users WHERE ${page.where} ${page.orderByLimit}`,
      page.params,
      reader,
    );
    return rows;
  }

  /**
   * Changes a role or the active flag, unless that would leave no active admin ('last-admin',
   * nothing changed). Changes are serialised by a transaction lock, so two admins demoting each
   * other at the same moment cannot both succeed.
   */
  async updateKeepingAnAdmin(
    id: string,
    changes: { role?: Role; active?: boolean },
  ): Promise<UserRow | null | 'last-admin'> {
    try {
      return await withTransaction(this.db.primary, async (client) => {
        await client.query(`SELECT pg_advisory_xact_lock(hashtext('lms.users.role-changes'))`);
        const updated = await client.query<UserRow>(
          `UPDATE users SET role = coalesce($2, role), active = coalesce($3, active) WHERE id = $1 RETURNING ${COLUMNS}`,
          [id, changes.role ?? null, changes.active ?? null],
        );
        const admins = await client.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM users WHERE role = 'admin' AND active`,
        );
        if (one(admins).n === 0) throw new WouldRemoveLastAdmin();
        return maybeOne(updated) ?? null;
      });
    } catch (error) {
      if (error instanceof WouldRemoveLastAdmin) return 'last-admin';
      throw error;
    }
  }
}
