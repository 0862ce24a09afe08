import { ConflictError, NotFoundError } from '@lms/core';
import type { Page, PageQuery } from '../../lib/pagination.js';
import { decodeCursor, toPage } from '../../lib/pagination.js';
import type { AuthUser } from '../../lib/auth-user.js';
import { presentUser } from './users.presenter.js';
import type { AuditRepository } from '../audit/audit.repository.js';
import type { SessionsRepository } from '../auth/sessions.repository.js';
import type { TokenRevocations } from '../auth/token-revocations.js';
import type { UsersRepository } from './users.repository.js';
import type { UpdateUserBody } from './users.schema.js';

export class UsersService {
  constructor(
    private readonly users: UsersRepository,
    private readonly sessions: SessionsRepository,
    private readonly audit: AuditRepository,
    private readonly revocations: TokenRevocations,
  ) {}

  async me(user: AuthUser): Promise<ReturnType<typeof presentUser>> {
    const row = await this.users.findById(user.id);
    if (!row) throw new NotFoundError('your account no longer exists');
    return presentUser(row);
  }

  async list(admin: AuthUser, page: PageQuery): Promise<Page<ReturnType<typeof presentUser>>> {
    const rows = await this.users.list(page.limit, decodeCursor(page.cursor), admin.id);
    return toPage(rows, page.limit, presentUser);
  }

  /**
   * Admin change of role or active flag; the last active admin cannot be demoted or deactivated.
   * Deactivation ends every session at once, its access tokens included; a role change refuses
   * the access tokens carrying the old role (a refresh then issues one with the new role).
   */
  async update(
    actor: AuthUser,
    id: string,
    changes: UpdateUserBody,
    requestId?: string,
  ): Promise<ReturnType<typeof presentUser>> {
    const target = await this.users.findById(id);
    if (!target) throw new NotFoundError('no such user');
    const row = await this.users.updateKeepingAnAdmin(id, changes);
    if (row === 'last-admin') throw new ConflictError('this is the last active admin; make another admin first');
    if (!row) throw new NotFoundError('no such user');
    if (changes.active === false) await this.sessions.revokeAllOf(id);
    // After the commit: a token signed from the changed row has a later issue time and stays valid.
    if (changes.active === false || row.role !== target.role) await this.revocations.refuseTokensIssuedBefore(id);
    await this.audit.record({
      actorId: actor.id,
      action: 'user.updated',
      entityType: 'user',
      entityId: id,
      details: { from: { role: target.role, active: target.active }, to: { role: row.role, active: row.active } },
      requestId,
    });
    return presentUser(row);
  }
}
