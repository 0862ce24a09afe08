import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { formatDuration, parseDurationMs } from '@lms/core/duration';
import { Output, table } from './output.js';

function streams(isTTY: boolean) {
  const make = () => {
    const stream = new PassThrough() as PassThrough & { isTTY?: boolean };
    stream.isTTY = isTTY;
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    return { stream, text: () => text };
  };
  const stdout = make();
  const stderr = make();
  return { streams: { stdout: stdout.stream, stderr: stderr.stream }, stdout: stdout.text, stderr: stderr.text };
}

const ANSI = new RegExp(String.fromCharCode(27) + '\\[');

describe('Output', () => {
  it('writes the result as JSON to stdout with --json and logs to stderr', async () => {
    const io = streams(false);
    const out = new Output({ json: true, verbose: false, env: {}, streams: io.streams });
    out.info('working');
    out.result({ ok: true }, () => 'human');
    await new Promise((resolve) => setImmediate(resolve));
    expect(JSON.parse(io.stdout())).toEqual({ ok: true });
    expect(io.stderr()).toBe('working\n');
  });

  it('uses colour on a terminal, and never with NO_COLOR or when not a terminal', async () => {
    const tty = streams(true);
    new Output({ json: false, verbose: false, env: {}, streams: tty.streams }).success('done');
    const noColor = streams(true);
    new Output({ json: false, verbose: false, env: { NO_COLOR: '' }, streams: noColor.streams }).success('done');
    const piped = streams(false);
    new Output({ json: false, verbose: false, env: {}, streams: piped.streams }).success('done');
    await new Promise((resolve) => setImmediate(resolve));
    expect(tty.stderr()).toMatch(ANSI);
    expect(noColor.stderr()).not.toMatch(ANSI);
    expect(piped.stderr()).not.toMatch(ANSI);
  });

  it('prints debug lines only with --verbose', async () => {
    const quiet = streams(false);
    new Output({ json: false, verbose: false, env: {}, streams: quiet.streams }).debug('detail');
    const verbose = streams(false);
    new Output({ json: false, verbose: true, env: {}, streams: verbose.streams }).debug('detail');
    await new Promise((resolve) => setImmediate(resolve));
    expect(quiet.stderr()).toBe('');
    expect(verbose.stderr()).toBe('detail\n');
  });
});

describe('table', () => {
  it('aligns columns', () => {
    const plain = new Output({ json: false, verbose: false, env: {}, streams: streams(false).streams }).style;
    expect(
      table(
        ['A', 'LONGER'],
        [
          ['xxxx', 'y'],
          ['z', 'w'],
        ],
        plain,
      ),
    ).toBe('A     LONGER\nxxxx  y\nz     w');
  });
});

describe('durations', () => {
  it('parses units and compound durations, refusing bare numbers', () => {
    expect(parseDurationMs('24h')).toBe(86_400_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('1.5s')).toBe(1500);
    expect(parseDurationMs('24')).toBeNull();
    expect(parseDurationMs('h')).toBeNull();
    expect(parseDurationMs('3 days')).toBeNull();
  });

  it('formats for people', () => {
    expect(formatDuration(12)).toBe('12 ms');
    expect(formatDuration(1500)).toBe('1.5 s');
    expect(formatDuration(3_723_000)).toBe('1h 2m 3s');
  });
});
