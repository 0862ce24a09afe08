import type pg from 'pg';
import { z } from 'zod';
import type { DeployRecord } from './history.js';

/** A deploy record as `deploy record` takes it on stdin: the history file's line. */
export const deployRecordSchema = z.object({
  id: z.string().min(1).max(100),
  kind: z.enum(['deploy', 'rollback']),
  project: z.string().min(1).max(100),
  env: z.string().min(1).max(30),
  image: z.string().min(1).max(500),
  imageId: z.string().min(1).max(200),
  previousImage: z.string().max(500).nullable(),
  by: z.string().min(1).max(300),
  startedAt: z.iso.datetime(),
  finishedAt: z.iso.datetime(),
  migrationsApplied: z.array(z.string().max(200)),
  outcome: z.enum(['succeeded', 'rolled-back', 'failed']),
  reason: z.string().max(4000).nullable(),
}) satisfies z.ZodType<DeployRecord>;

/** Writes (or, for the same id, rewrites) one deploy into the `deployments` table. */
export async function saveDeployment(client: pg.ClientBase, record: DeployRecord): Promise<void> {
  await client.query(
    `INSERT INTO deployments (id, kind, project, environment, image, image_id, previous_image, started_by,
                              started_at, finished_at, migrations_applied, outcome, reason)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (id) DO UPDATE SET finished_at = EXCLUDED.finished_at,
                                    migrations_applied = EXCLUDED.migrations_applied,
                                    outcome = EXCLUDED.outcome, reason = EXCLUDED.reason`,
    [
      record.id,
      record.kind,
      record.project,
      record.env,
      record.image,
      record.imageId,
      record.previousImage,
      record.by,
      record.startedAt,
      record.finishedAt,
      record.migrationsApplied,
      record.outcome,
      record.reason,
    ],
  );
}
