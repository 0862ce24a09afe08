import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ConflictError, ForbiddenError, queueJob, UnauthorizedError, withTransaction } from '@lms/core';
import { hashPassword, verifyPassword } from '@lms/core/passwords';
import { jobIdFor } from '@lms/core/queue';
import type { ApiMetrics } from '../../lib/api-metrics.js';
import type { UsersRepository, UserRow } from '../users/users.repository.js';
import type { LoginBody, RefreshBody, RegisterBody } from './auth.schema.js';
import type { NewRefreshToken, SessionsRepository } from './sessions.repository.js';
import type { TokenRevocations } from './token-revocations.js';
import { hashRefreshToken, newRefreshToken, type AccessTokens } from './tokens.js';

export interface Session {
  user: { id: string; email: string; name: string; role: UserRow['role'] };
  accessToken: string;
  refreshToken: string;
}

interface ClientInfo {
  userAgent?: string;
  ip?: string;
}

/**
 * Accounts and sessions. Access tokens are short-lived JWTs; refresh tokens are opaque, stored
 * hashed, and rotate on every use. Presenting a refresh token that was already rotated means
 * it leaked: the whole session (its family) is revoked.
 */
export class AuthService {
  /** Verified against when the e-mail is unknown, so a login takes as long either way. */
  private readonly dummyHash = hashPassword(randomUUID());

  constructor(
    private readonly users: UsersRepository,
    private readonly sessions: SessionsRepository,
    private readonly tokens: AccessTokens,
    private readonly revocations: TokenRevocations,
    /** The primary: a registration and its welcome e-mail commit together. */
    private readonly db: pg.Pool,
    private readonly metrics: ApiMetrics,
    private readonly refreshTtlMs: number,
  ) {}

  async register(body: RegisterBody, client: ClientInfo): Promise<Session> {
    const passwordHash = await hashPassword(body.password);
    const user = await withTransaction(this.db, async (tx) => {
      const inserted = await this.users.insert(
        { email: body.email, name: body.name, passwordHash, role: 'student' },
        tx,
      );
      if (!inserted) return null;
      const idempotencyKey = `welcome-${inserted.id}`;
      await queueJob(
        tx,
        'email.send',
        { to: inserted.email, template: 'welcome', props: { name: inserted.name }, idempotencyKey },
        jobIdFor('email.send', idempotencyKey),
      );
      return inserted;
    });
    if (!user) throw new ConflictError('an account with this e-mail address already exists; sign in instead');
    this.metrics.registrations.inc();
    return this.startSession(user, randomUUID(), client);
  }

  async login(body: LoginBody, client: ClientInfo): Promise<Session> {
    // Before the read: a deactivation committed while this login runs refuses its token.
    const issuedAt = new Date();
    const user = await this.users.findByEmail(body.email);
    const valid = await verifyPassword(user?.password_hash ?? (await this.dummyHash), body.password);
    if (!user || !valid) throw new UnauthorizedError('e-mail address or password is wrong');
    if (!user.active) throw new ForbiddenError('this account is deactivated; ask an administrator');
    await this.users.recordLogin(user.id);
    return this.startSession(user, randomUUID(), client, issuedAt);
  }

  async refresh(body: RefreshBody, client: ClientInfo): Promise<Session> {
    const stored = await this.sessions.findByHash(hashRefreshToken(body.refreshToken));
    if (!stored) throw new UnauthorizedError('refresh token is not valid; sign in again');
    if (stored.revoked_at) return this.endReusedSession(stored.family_id);
    if (stored.expires_at.getTime() <= Date.now()) throw new UnauthorizedError('session expired; sign in again');
    // Before the read: a role change or deactivation committed while this refresh runs refuses its token.
    const issuedAt = new Date();
    const user = await this.users.findById(stored.user_id);
    if (!user?.active) {
      await this.sessions.revokeFamily(stored.family_id);
      throw new UnauthorizedError('this account is no longer active');
    }
    const refreshToken = newRefreshToken();
    const replaced = await this.sessions.rotate(
      stored.id,
      this.tokenRecord(user, stored.family_id, refreshToken, client),
    );
    // Used by a concurrent refresh between the read above and the rotation.
    if (replaced === null) return this.endReusedSession(stored.family_id);
    return this.session(user, stored.family_id, refreshToken, issuedAt);
  }

  /** Ends the session: its refresh tokens and, through the deny-list, its access tokens. */
  async logout(body: RefreshBody): Promise<void> {
    const stored = await this.sessions.findByHash(hashRefreshToken(body.refreshToken));
    if (!stored) return;
    await this.sessions.revokeFamily(stored.family_id);
    await this.revocations.endSession(stored.family_id);
  }

  /** A refresh token presented a second time leaked: the whole session ends. */
  private async endReusedSession(familyId: string): Promise<never> {
    await this.sessions.revokeFamily(familyId);
    await this.revocations.endSession(familyId);
    throw new UnauthorizedError('refresh token was already used, so the session was ended; sign in again');
  }

  private async startSession(
    user: UserRow,
    familyId: string,
    client: ClientInfo,
    issuedAt = new Date(),
  ): Promise<Session> {
    const refreshToken = newRefreshToken();
    await this.sessions.insert(this.tokenRecord(user, familyId, refreshToken, client));
    return this.session(user, familyId, refreshToken, issuedAt);
  }

  /** What is stored of a new refresh token: its hash, never the token. */
  private tokenRecord(user: UserRow, familyId: string, refreshToken: string, client: ClientInfo): NewRefreshToken {
    return {
      userId: user.id,
      familyId,
      tokenHash: hashRefreshToken(refreshToken),
      expiresAt: new Date(Date.now() + this.refreshTtlMs),
      userAgent: client.userAgent,
      ip: client.ip,
    };
  }

  private async session(user: UserRow, familyId: string, refreshToken: string, issuedAt: Date): Promise<Session> {
    return {
      user: { id: user.id, email: user.email, name: user.name, role: user.role },
      accessToken: await this.tokens.issue(user, familyId, issuedAt),
      refreshToken,
    };
  }
}
