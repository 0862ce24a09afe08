import type { ChalkInstance } from 'chalk';
import type { CommandContext } from '../../context.js';
import { CliError, ExitCode } from '../../errors.js';
import { deployHistory, deployStack, type DeployOptions } from '../../deploy/deploy.js';
import { historyFile, previousImage, readHistory, type DeployRecord } from '../../deploy/history.js';
import { resolveStack, type StackSelection } from '../../lib/compose/compose-cli.js';
import { table } from '../../output.js';

/** `lmsctl deploy --image REF`: a rolling update of the running stack. */
export function deploy(ctx: CommandContext, options: DeployOptions): Promise<DeployRecord> {
  return deployStack(ctx, options, 'deploy');
}

/**
 * `lmsctl deploy rollback [IMAGE]`: the same rolling update, to IMAGE or (default) the image that
 * ran before the last successful deploy. Migrations are not reverted: deploys run expand-only
 * ones, which the previous version runs on.
 */
export async function deployRollback(
  ctx: CommandContext,
  options: Omit<DeployOptions, 'image' | 'backup' | 'allowContract' | 'skipStaging'> & { image?: string },
): Promise<DeployRecord> {
  let image = options.image;
  if (!image) {
    const target = resolveStack({ ...options, env: options.env ?? 'prod', envFile: ctx.envFile }, ctx.env, ctx.cwd);
    image = previousImage(await readHistory(historyFile(target.project, ctx.env))) ?? undefined;
    if (!image) {
      throw new CliError(
        ExitCode.usage,
        `no earlier image of ${target.project} in its deploy history`,
        'name the image: lmsctl deploy rollback IMAGE',
      );
    }
  }
  return deployStack(ctx, { ...options, image }, 'rollback');
}

export function renderDeploy(record: DeployRecord): string {
  const migrations = record.migrationsApplied.length ? `; migrations ${record.migrationsApplied.join(', ')}` : '';
  return `${record.project} (${record.env}) runs ${record.image} (was ${record.previousImage ?? 'unknown'})${migrations}`;
}

export async function history(ctx: CommandContext, options: StackSelection): Promise<{ deploys: DeployRecord[] }> {
  return { deploys: await deployHistory(ctx, options) };
}

export function renderHistory(result: { deploys: DeployRecord[] }, style: ChalkInstance): string {
  if (result.deploys.length === 0) return 'no deploys recorded';
  const outcome = (record: DeployRecord) =>
    record.outcome === 'succeeded'
      ? style.green(record.outcome)
      : style.red(`${record.outcome}${record.reason ? `: ${record.reason}` : ''}`);
  return table(
    ['STARTED', 'KIND', 'IMAGE', 'PREVIOUS', 'BY', 'MIGRATIONS', 'OUTCOME'],
    result.deploys.map((record) => [
      record.startedAt.replace('T', ' ').replace(/\..*/, ''),
      record.kind,
      `${record.image} (${record.imageId.replace(/^sha256:/, '').slice(0, 12)})`,
      record.previousImage ?? '',
      record.by,
      record.migrationsApplied.join(', '),
      outcome(record),
    ]),
    style,
  );
}
