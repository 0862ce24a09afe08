import type { Readable } from 'node:stream';

/** One line of a child's JSON log, made readable: level, message, request. */
export function prettyLine(line: string): string {
  try {
    const entry = JSON.parse(line) as {
      level?: string;
      msg?: string;
      req?: { method?: string; path?: string };
      res?: { statusCode?: number };
      responseTime?: number;
      err?: { message?: string };
    };
    const request = entry.req
      ? ` ${entry.req.method} ${entry.req.path}${entry.res?.statusCode ? ` ${entry.res.statusCode}` : ''}${entry.responseTime !== undefined ? ` ${entry.responseTime} ms` : ''}`
      : '';
    return `${entry.level ?? ''} ${entry.msg ?? ''}${request}${entry.err?.message ? ` — ${entry.err.message}` : ''}`.trim();
  } catch {
    return line;
  }
}

/**
 * Writes every non-empty line of `streams` made readable and behind `prefix`; a line split
 * across chunks is written once it is whole.
 */
export function prettifyLines(
  streams: Array<Readable | null | undefined>,
  prefix: string,
  write: (text: string) => void,
): void {
  for (const stream of streams) {
    let pending = '';
    stream?.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) if (line.trim()) write(`${prefix} ${prettyLine(line)}\n`);
    });
  }
}
