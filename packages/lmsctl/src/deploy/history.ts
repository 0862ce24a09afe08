import { appendFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { composeDir } from '../lib/compose/compose-cli.js';

/** One deploy or rollback of a stack, as `deploy history` shows it. */
export interface DeployRecord {
  id: string;
  kind: 'deploy' | 'rollback';
  project: string;
  env: string;
  image: string;
  /** The image's id (sha256:…) on this host: what ran, whatever the tag points at later. */
  imageId: string;
  previousImage: string | null;
  /** user@host that ran it. */
  by: string;
  startedAt: string;
  finishedAt: string;
  migrationsApplied: string[];
  outcome: 'succeeded' | 'rolled-back' | 'failed';
  /** Why it was rolled back or failed. */
  reason: string | null;
}

/**
 * Deploys are recorded one JSON line each in `<project>.jsonl` under LMS_DEPLOY_DIR (default
 * compose/.deploy/, beside the Compose files): appending a line is atomic enough for one
 * operator at a time, survives a lost database, and is readable with jq.
 */
export function historyFile(project: string, env: NodeJS.ProcessEnv): string {
  return path.join(env.LMS_DEPLOY_DIR || path.join(composeDir, '.deploy'), `${project}.jsonl`);
}

export async function readHistory(file: string): Promise<DeployRecord[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line) as DeployRecord);
}

export async function appendHistory(file: string, record: DeployRecord): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await appendFile(file, `${JSON.stringify(record)}\n`, { mode: 0o644 });
}

/** The image the stack runs after its history: that of the newest deploy or rollback that succeeded. */
export function currentImage(history: DeployRecord[]): string | null {
  return history.findLast((record) => record.outcome === 'succeeded')?.image ?? null;
}

/** `deploy rollback` without an image: the one that ran before the current one. */
export function previousImage(history: DeployRecord[]): string | null {
  const succeeded = history.filter((record) => record.outcome === 'succeeded');
  const current = succeeded.at(-1);
  if (!current) return null;
  return current.previousImage;
}
