import type pg from 'pg';

export interface AuditEntry {
  actorId: string | null;
  /** `entity.verb`, e.g. `user.role_changed`. */
  action: string;
  entityType: string;
  entityId: string;
  details?: Record<string, unknown>;
  requestId?: string;
}

/** Who did what to which record: account and role changes, publishing, admin actions. */
export class AuditRepository {
  constructor(private readonly db: { primary: pg.Pool }) {}

  async record(entry: AuditEntry): Promise<void> {
    await this.db.primary.query(
      `INSERT INTO audit_log (actor_id, action, entity_type, entity_id, details, request_id)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [
        entry.actorId,
        entry.action,
        entry.entityType,
        entry.entityId,
        JSON.stringify(entry.details ?? {}),
        entry.requestId ?? null,
      ],
    );
  }
}
