import { ConflictError, NotFoundError } from '@lms/core';
import type { Page, PageQuery } from '../../http/pagination.js';
import { decodeCursor, toPage } from '../../http/pagination.js';
import type { AuthUser } from '../../http/routes.js';
import { presentUser } from './users.presenter.js';
import type { AuditRepository } from '../audit/audit.repository.js';
import type { UsersRepository } from './users.repository.js';
import type { UpdateUserBody } from './users.schema.js';

export class UsersService {
  constructor(
    private readonly users: UsersRepository,
    private readonly audit: AuditRepository,
  ) {}

  async me(user: AuthUser): Promise<ReturnType<typeof presentUser>> {
    const row = await this.users.findById(user.id);
    if (!row) throw new NotFoundError('your account no longer exists');
    return presentUser(row);
  }

  async list(page: PageQuery): Promise<Page<ReturnType<typeof presentUser>>> {
    const rows = await this.users.list(page.limit, decodeCursor(page.cursor));
    return toPage(rows, page.limit, presentUser, (row) => ({ at: row.created_at.toISOString(), id: row.id }));
  }

  /** Admin change of role or active flag; the last active admin cannot demote or deactivate themselves away. */
  async update(
    actor: AuthUser,
    id: string,
    changes: UpdateUserBody,
    requestId?: string,
  ): Promise<ReturnType<typeof presentUser>> {
    const target = await this.users.findById(id);
    if (!target) throw new NotFoundError('no such user');
    const losesAdmin =
      target.role === 'admin' &&
      target.active &&
      (changes.active === false || (changes.role && changes.role !== 'admin'));
    if (losesAdmin && (await this.users.countActiveAdmins()) <= 1) {
      throw new ConflictError('this is the last active admin; make another admin first');
    }
    const row = await this.users.update(id, changes);
    if (!row) throw new NotFoundError('no such user');
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
