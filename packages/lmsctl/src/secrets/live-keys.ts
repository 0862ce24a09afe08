import type pg from 'pg';
import { accessTokenKeyId, connectClient, webhookSecretBox } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import { NO_DATABASE_GIVEN, type CommandContext } from '../context.js';
import { backupDirOf, backupKeyOf } from '../backup/context.js';
import { describeBackups, storedKeyIdOf } from '../backup/inventory.js';
import { probe, type StatusItem } from '../health/probes.js';

/**
 * Which keys are live, for `lmsctl status`: by key id only, never a value. What lmsctl sees is
 * its own environment; in the Compose stack that is the api's and the worker's too (x-app-env),
 * elsewhere give lmsctl the same env file to see theirs.
 */

/** Webhook signing secrets per key id (`null`: stored in plain text, from before encryption at rest). */
export async function webhookSecretsByKeyId(client: pg.ClientBase): Promise<Map<string | null, number>> {
  const { rows } = await client.query<{ key_id: string | null; count: number }>(
    `SELECT CASE WHEN secret IS NOT NULL THEN NULL ELSE secret_key_id END AS key_id, count(*)::int AS count
       FROM webhook_subscriptions GROUP BY 1 ORDER BY 1 NULLS FIRST`,
  );
  return new Map(rows.map((row) => [row.key_id, row.count]));
}

/** SECRET_KEY and SECRET_KEY_PREVIOUS by kid. */
export function accessTokenKeysItem(ctx: CommandContext): StatusItem {
  const { SECRET_KEY: signing, SECRET_KEY_PREVIOUS: other, ACCESS_TOKEN_TTL: ttl } = ctx.config;
  if (!signing) {
    return {
      name: 'access-token keys',
      state: 'manual',
      detail: "SECRET_KEY is not set for lmsctl: run it with the api's environment to see the key ids",
    };
  }
  const signingKid = accessTokenKeyId(signing);
  const otherKid = other && other !== signing ? accessTokenKeyId(other) : null;
  return {
    name: 'access-token keys',
    state: 'ok',
    detail: otherKid
      ? `signed with kid ${signingKid} (SECRET_KEY); also accepted: kid ${otherKid} (SECRET_KEY_PREVIOUS, a rotation in progress: remove it once the switch is deployed and ${formatDuration(ttl)} have passed)`
      : `signed with kid ${signingKid} (SECRET_KEY); no other key accepted`,
    data: { signingKid, alsoAcceptedKid: otherKid },
  };
}

/** Webhook secrets per key id against WEBHOOK_SECRET_KEY and WEBHOOK_SECRET_KEY_PREVIOUS. */
export async function webhookKeysItem(ctx: CommandContext): Promise<StatusItem[]> {
  const url = ctx.databaseUrl;
  if (!url) return [{ name: 'webhook keys', state: 'manual', detail: NO_DATABASE_GIVEN }];
  return probe('webhook keys', async () => {
    const client = await connectClient(url, { applicationName: 'lmsctl status' });
    let byKeyId: Map<string | null, number>;
    try {
      byKeyId = await webhookSecretsByKeyId(client);
    } finally {
      await client.end();
    }
    const box = webhookSecretBox(ctx.config);
    const current = box?.current.id ?? null;
    const previous = box?.keyIds[1] ?? null;
    const plain = byKeyId.get(null) ?? 0;
    const counts = [...byKeyId].flatMap(([keyId, count]) => (keyId === null ? [] : [{ keyId, count }]));
    const data = {
      keyId: current,
      previousKeyId: previous,
      plainText: plain,
      secretsByKeyId: Object.fromEntries(counts.map(({ keyId, count }) => [keyId, count])),
    };
    const label = (keyId: string) =>
      keyId === current
        ? `${keyId} (current)`
        : keyId === previous
          ? `${keyId} (previous)`
          : `${keyId} (NOT configured)`;
    const census = [
      ...counts.map(({ keyId, count }) => `${count} under ${label(keyId)}`),
      ...(plain ? [`${plain} in plain text`] : []),
    ];
    const found = census.length ? census.join(', ') : 'no webhook secrets stored';
    if (!box) {
      return {
        name: 'webhook keys',
        state: counts.length ? 'manual' : 'ok',
        detail: counts.length
          ? `${found}; WEBHOOK_SECRET_KEY is not set for lmsctl, so it cannot tell which of them the api holds`
          : found,
        data,
      };
    }
    const unknown = counts.filter(({ keyId }) => !box.holds(keyId));
    const underPrevious = counts.find(({ keyId }) => keyId === previous)?.count ?? 0;
    if (unknown.length) {
      return {
        name: 'webhook keys',
        state: 'fail',
        detail: `${found}: set WEBHOOK_SECRET_KEY_PREVIOUS to the key with id ${unknown.map((entry) => entry.keyId).join(', ')} (those deliveries fail)`,
        data,
      };
    }
    if (plain || underPrevious) {
      return {
        name: 'webhook keys',
        state: 'warn',
        detail: `${found}: run \`lmsctl webhooks encrypt-secrets\``,
        data,
      };
    }
    return {
      name: 'webhook keys',
      state: 'ok',
      detail: previous
        ? `${found}; none needs WEBHOOK_SECRET_KEY_PREVIOUS (${previous}): staged for a switch, or ready to retire`
        : found,
      data,
    };
  });
}

/** The key id of LMS_BACKUP_KEY_FILE, and the backups in the folder per key id. */
export async function backupKeyItem(ctx: CommandContext): Promise<StatusItem[]> {
  return probe('backup key', async () => {
    const dir = backupDirOf(ctx);
    const perKeyId = new Map<string, number>();
    let newestKeyId: string | null | undefined;
    for (const info of await describeBackups(dir)) {
      if (!info.complete) continue;
      const keyId = await storedKeyIdOf(info);
      // describeBackups lists newest first.
      if (newestKeyId === undefined) newestKeyId = keyId;
      if (keyId !== null) perKeyId.set(keyId, (perKeyId.get(keyId) ?? 0) + 1);
    }
    const held = ctx.config.LMS_BACKUP_KEY_FILE ? (await backupKeyOf(ctx, dir, 'status')).keyId : null;
    const census = [...perKeyId].map(
      ([keyId, count]) => `${count} under ${keyId}${keyId === held ? ' (LMS_BACKUP_KEY_FILE)' : ''}`,
    );
    const data = { keyId: held, backupsByKeyId: Object.fromEntries(perKeyId), newestKeyId: newestKeyId ?? null };
    const inFolder = census.length ? `encrypted backups in the folder: ${census.join(', ')}` : 'no encrypted backups';
    if (held === null) {
      return {
        name: 'backup key',
        state: perKeyId.size ? 'warn' : 'ok',
        detail: `LMS_BACKUP_KEY_FILE is not set; ${inFolder}`,
        data,
      };
    }
    const others = [...perKeyId.keys()].filter((keyId) => keyId !== held);
    const newestElsewhere = typeof newestKeyId === 'string' && newestKeyId !== held;
    return {
      name: 'backup key',
      state: newestElsewhere ? 'warn' : 'ok',
      detail:
        `LMS_BACKUP_KEY_FILE holds key id ${held}; ${inFolder}` +
        (others.length ? `; keep the key file of ${others.join(', ')} until those backups are pruned` : '') +
        (newestElsewhere ? `; the newest backup is under ${newestKeyId}: take one with the new key` : ''),
      data,
    };
  });
}
