import { readdir, readFile } from 'node:fs/promises';

/** A process as Linux's /proc describes it; the start time tells it from a later one with the same pid. */
export interface ProcessInfo {
  pid: number;
  ppid: number;
  /** The program name (`comm`), e.g. "pg_dump". */
  command: string;
  /** R, S, D, … ; Z for a zombie (ended, not yet reaped). */
  state: string;
  startTicks: number;
}

/** Reads /proc/<pid>/stat; null when there is no such process. */
export async function readProcess(pid: number): Promise<ProcessInfo | null> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (stat === null) return null;
  // "pid (comm) state ppid … starttime …": comm may hold spaces and parentheses, so split at the last ')'.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const fields = stat
    .slice(close + 2)
    .trim()
    .split(' ');
  return {
    pid,
    ppid: Number(fields[1]),
    command: stat.slice(open + 1, close),
    state: fields[0]!,
    startTicks: Number(fields[19]),
  };
}

/** Every process below `root` (children, their children, …), found through their parent pids. */
export async function descendantsOf(root: number): Promise<ProcessInfo[]> {
  const all: ProcessInfo[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = await readProcess(Number(entry));
    if (info) all.push(info);
  }
  const found: ProcessInfo[] = [];
  const parents = [root];
  for (let parent = parents.shift(); parent !== undefined; parent = parents.shift()) {
    for (const info of all.filter((candidate) => candidate.ppid === parent)) {
      found.push(info);
      parents.push(info.pid);
    }
  }
  return found;
}

/** Whether this very process (same pid and start time) still runs; a zombie has ended. */
export async function isRunning(target: ProcessInfo): Promise<boolean> {
  const now = await readProcess(target.pid);
  return now !== null && now.startTicks === target.startTicks && now.state !== 'Z' && now.state !== 'X';
}

/** The processes of `processes` still running once they all ended, or `timeoutMs` passed. */
export async function stillRunningAfter(processes: ProcessInfo[], timeoutMs: number): Promise<ProcessInfo[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const running: ProcessInfo[] = [];
    for (const info of processes) if (await isRunning(info)) running.push(info);
    if (running.length === 0 || Date.now() >= deadline) return running;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
