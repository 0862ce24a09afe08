import os from 'node:os';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { isProcessAlive } from '../../lib/process-alive.js';

/**
 * Temporary files and folders (dumps being written, directory dumps being written or
 * encrypted, decrypted copies, manifests and bundles before their rename) are named `<file>.<host>.<pid>.partial`. The host matters because the backup folder
 * may be a share that several machines write: a pid says nothing about another host's process.
 */
const HOST = os.hostname().replace(/[^A-Za-z0-9-]/g, '-') || 'host';
const PARTIAL_PATTERN = /^\.?lms_.*\.([A-Za-z0-9-]+)\.(\d+)\.partial$/;

/**
 * Names this process handed out. A file with this process's pid but not among them was left by
 * an earlier process that had the same pid (pids repeat, in containers from run to run). Names
 * are a few per backup or restore, so even a long `schedule run` keeps this small.
 */
const issuedNames = new Set<string>();

export function partialPathOf(file: string): string {
  const partial = `${file}.${HOST}.${process.pid}.partial`;
  issuedNames.add(path.basename(partial));
  return partial;
}

/**
 * Removes this host's temporary files whose lmsctl process is gone (killed mid-way), at once:
 * a dead writer's file is never finished, however young it is.
 */
export async function removeStalePartials(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const match = PARTIAL_PATTERN.exec(name);
    if (!match || match[1] !== HOST) continue;
    const pid = Number(match[2]);
    if (pid === process.pid ? issuedNames.has(name) : isProcessAlive(pid)) continue;
    // A directory dump's folder goes with everything in it.
    await rm(path.join(dir, name), { recursive: true, force: true }).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}
