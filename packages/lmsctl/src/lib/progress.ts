import type { Output } from '../output.js';
import { formatDuration } from '@lms/core/duration';

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/**
 * A one-line progress display on stderr, redrawn twice a second — only on a terminal, so
 * logs and CI output never fill with carriage returns. `describe` returns the current text.
 */
export function startProgress(out: Output, label: string, describe: (elapsedMs: number) => string): { stop(): void } {
  if (!out.stderrIsTTY || out.json) return { stop: () => undefined };
  const started = Date.now();
  const stream = out.streams.stderr;
  const draw = () => {
    const elapsed = Date.now() - started;
    stream.write(`\r\x1b[2K${label} ${describe(elapsed)} ${out.errStyle.dim(formatDuration(elapsed))}`);
  };
  const timer = setInterval(draw, 500);
  timer.unref();
  let stopped = false;
  return {
    stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      stream.write('\r\x1b[2K');
    },
  };
}

/** "123.4 MiB, 45.6 MiB/s" for a byte count after `elapsedMs`. */
export function describeTransfer(bytes: number, elapsedMs: number): string {
  const rate = elapsedMs > 0 ? (bytes / elapsedMs) * 1000 : 0;
  return `${formatBytes(bytes)} written, ${formatBytes(rate)}/s`;
}
