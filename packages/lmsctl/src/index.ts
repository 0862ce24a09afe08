#!/usr/bin/env node
import { main } from './main.js';

// `lmsctl queue list | head`: once the reader is gone, stop quietly as other Unix tools do, instead
// of crashing on the next write with an unhandled EPIPE.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    // eslint-disable-next-line no-restricted-properties
    process.exit(process.exitCode ?? 0);
  });
}

process.exitCode = await main(process.argv.slice(2));
