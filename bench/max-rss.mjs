// Preloaded into a measured process (node --import): writes the process's own peak RSS in KiB
// to $LMS_MAX_RSS_FILE at exit. /usr/bin/time would also count pg_dump and pg_restore.
import { writeFileSync } from 'node:fs';

process.on('exit', () => {
  if (process.env.LMS_MAX_RSS_FILE) writeFileSync(process.env.LMS_MAX_RSS_FILE, String(process.resourceUsage().maxRSS));
});
