import { PassThrough } from 'node:stream';
import { createContext, type CommandContext } from '../context.js';

export interface TestContext {
  ctx: CommandContext;
  stdout(): string;
  stderr(): string;
}

/**
 * A real command context for calling command functions in-process: the given environment only
 * (nothing from the developer's), output captured, no terminal (so confirmations refuse
 * unless `yes`).
 */
export function testContext(options: {
  env?: Record<string, string>;
  cwd: string;
  yes?: boolean;
  json?: boolean;
}): TestContext {
  let out = '';
  let err = '';
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  stderr.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
  const ctx = createContext({
    env: { PATH: process.env.PATH ?? '', ...options.env },
    cwd: options.cwd,
    yes: options.yes,
    json: options.json,
    streams: { stdout, stderr },
  });
  return { ctx, stdout: () => out, stderr: () => err };
}
