const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 } as const;

/**
 * Parses `90s`, `15m`, `24h`, `7d`, `1h30m` into milliseconds; null when the text is not such a
 * duration. Bare numbers are refused: `--require-backup 24` must say hours or days.
 */
export function parseDurationMs(text: string): number | null {
  const trimmed = text.trim().toLowerCase();
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)];
  if (parts.length === 0 || parts.map((part) => part[0]).join('') !== trimmed) return null;
  return parts.reduce((total, part) => total + Number(part[1]) * UNIT_MS[part[2] as keyof typeof UNIT_MS], 0);
}

/** 3723000 → "1h 2m 3s"; short durations in ms or seconds with one decimal. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const totalSeconds = Math.round(ms / 1000);
  const days = Math.floor(totalSeconds / 86_400);
  const hours = Math.floor((totalSeconds % 86_400) / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  return [days && `${days}d`, hours && `${hours}h`, minutes && `${minutes}m`, seconds && `${seconds}s`]
    .filter(Boolean)
    .join(' ');
}
