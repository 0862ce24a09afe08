import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** One measured figure, always reported beside the anchor measured in the same run. */
export interface Comparison {
  what: string;
  value: number;
  anchorName: string;
  anchor: number;
  unit: string;
  /** value / anchor must stay at or below this (or at or above, for throughput). */
  limit: number;
  direction: 'at-most' | 'at-least';
}

export interface BenchSection {
  /** Stable id; the section in docs/benchmarks.md is replaced by the next run of the same id. */
  id: string;
  title: string;
  method: string;
  comparisons: Comparison[];
  notes?: string[];
}

export interface Benchmark {
  id: string;
  run(): Promise<BenchSection>;
}

export function ratio(comparison: Comparison): number {
  return comparison.value / comparison.anchor;
}

export function passes(comparison: Comparison): boolean {
  const r = ratio(comparison);
  return comparison.direction === 'at-most' ? r <= comparison.limit : r >= comparison.limit;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Wall time of a command, median of `runs`, with the commands interleaved run by run so that
 * machine noise hits each of them alike.
 */
export async function timeCommands(
  commands: Record<string, { file: string; args: string[]; cwd?: string; env?: NodeJS.ProcessEnv }>,
  runs: number,
): Promise<Record<string, number>> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(commands).map((name) => [name, []]));
  for (let index = 0; index < runs; index++) {
    for (const [name, command] of Object.entries(commands)) {
      const started = performance.now();
      await execFileAsync(command.file, command.args, { cwd: command.cwd, env: command.env ?? process.env });
      samples[name]!.push(performance.now() - started);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, median(values)]));
}

export function machineDescription(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`;
}
