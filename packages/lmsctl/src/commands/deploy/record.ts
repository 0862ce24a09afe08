import { text } from 'node:stream/consumers';
import { connectClient, errorMessage } from '@lms/core';
import { requireDatabaseUrl, type CommandContext } from '../../context.js';
import { usageError } from '../../errors.js';
import { deployRecordSchema, saveDeployment } from '../../deploy/deployments-table.js';

/**
 * `lmsctl deploy record`: one deploy record (the history file's JSON line) from stdin into the
 * database's `deployments` table. `lmsctl deploy` runs it inside the stack once the outcome is
 * known, where the database is reachable; by hand it brings old history lines into the table.
 */
export async function recordDeployment(
  ctx: CommandContext,
  stdin: NodeJS.ReadableStream = process.stdin,
): Promise<{ recorded: string }> {
  const url = requireDatabaseUrl(ctx);
  let parsed: unknown;
  try {
    parsed = JSON.parse(await text(stdin));
  } catch (error) {
    throw usageError(`deploy record reads one JSON deploy record on stdin: ${errorMessage(error)}`);
  }
  const record = deployRecordSchema.safeParse(parsed);
  if (!record.success) {
    throw usageError(
      `not a deploy record: ${record.error.issues.map((issue) => `${issue.path.join('.') || 'record'}: ${issue.message}`).join('; ')}`,
    );
  }
  const client = await connectClient(url, { applicationName: 'lmsctl deploy record' });
  try {
    await saveDeployment(client, record.data);
  } finally {
    await client.end();
  }
  return { recorded: record.data.id };
}
