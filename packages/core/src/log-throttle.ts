import type { Logger } from 'pino';

/** How often one kind of recurring failure is logged at most (a line per minute). */
export const defaultLogThrottleMs = 60_000;

/**
 * Logs recurring failures without flooding: the first of each kind at once, then at most one line
 * per interval that says how many more there were. A Redis that refuses every command once made a
 * worker write 34 212 identical lines (54 MB) in 12 s; the counts are what an operator needs, and
 * metrics carry the rate.
 */
export class ThrottledLog {
  private readonly kinds = new Map<string, { loggedAt: number; suppressed: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = defaultLogThrottleMs,
    private readonly now: () => number = Date.now,
  ) {}

  warn(kind: string, fields: Record<string, unknown>, message: string): void {
    this.write('warn', kind, fields, message);
  }

  error(kind: string, fields: Record<string, unknown>, message: string): void {
    this.write('error', kind, fields, message);
  }

  private write(level: 'warn' | 'error', kind: string, fields: Record<string, unknown>, message: string): void {
    const now = this.now();
    const entry = this.kinds.get(kind);
    if (entry && now - entry.loggedAt < this.intervalMs) {
      entry.suppressed += 1;
      return;
    }
    const suppressed = entry?.suppressed ?? 0;
    this.kinds.set(kind, { loggedAt: now, suppressed: 0 });
    if (suppressed === 0) {
      this.logger[level](fields, message);
      return;
    }
    const seconds = Math.round((now - entry!.loggedAt) / 1000);
    this.logger[level](
      { ...fields, suppressed },
      `${message} (${suppressed} more like it in the ${seconds} s since the last such line)`,
    );
  }
}
