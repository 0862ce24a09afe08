import { configFields, type ConfigField } from './config.js';

/**
 * Renders the configuration reference and `.env.example` from the config schema, so both stay
 * exactly what the code accepts (`pnpm docs:config` writes them; a test fails when stale).
 */

const groupTitles: Record<ConfigField['group'], string> = {
  runtime: 'Runtime',
  database: 'PostgreSQL',
  redis: 'Redis',
  http: 'HTTP API',
  auth: 'Accounts and tokens',
  jobs: 'Background jobs',
  email: 'Email',
  webhooks: 'Webhooks',
  backups: 'Backups and drills',
  azure: 'Azure',
  deployment: 'Deployment',
};

function fieldsByGroup(): Array<[ConfigField['group'], Array<[string, ConfigField]>]> {
  const groups = new Map<ConfigField['group'], Array<[string, ConfigField]>>();
  for (const [name, field] of Object.entries(configFields) as Array<[string, ConfigField]>) {
    groups.set(field.group, [...(groups.get(field.group) ?? []), [name, field]]);
  }
  return (Object.keys(groupTitles) as Array<ConfigField['group']>)
    .filter((group) => groups.has(group))
    .map((group) => [group, groups.get(group)!]);
}

const escapeCell = (text: string) => text.replace(/\|/g, '\\|');

export function renderConfigurationMarkdown(): string {
  const lines = [
    '# Configuration reference',
    '',
    '<!-- Generated from packages/core/src/config.ts by `pnpm docs:config`; do not edit by hand. -->',
    '',
    'Every process (api, worker, lmsctl) reads these variables from its environment once at start-up and',
    'refuses to start when any is invalid, listing every problem at once. lmsctl also reads `.env` in the',
    'working directory (or `--env-file`); variables already set in the environment win. Empty values count as',
    'unset. Variables marked secret never appear in logs, error messages or `--json` output.',
    '',
    'In `NODE_ENV=production`, `SECRET_KEY` must be at least 64 characters, `WEBHOOK_SECRET_KEY` must be set and `DEBUG` must be false.',
  ];
  for (const [group, fields] of fieldsByGroup()) {
    lines.push('', `## ${groupTitles[group]}`, '', '| Variable | Default | Secret | Meaning |', '|---|---|---|---|');
    for (const [name, field] of fields) {
      const fallback = field.default === undefined ? '—' : `\`${field.default}\``;
      lines.push(`| \`${name}\` | ${fallback} | ${field.secret ? 'yes' : ''} | ${escapeCell(field.description)} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Wraps a description into `# ` comment lines of at most ~100 characters. */
function commentLines(text: string): string[] {
  const words = text.replace(/`/g, '').split(/\s+/);
  const lines: string[] = [];
  let line = '#';
  for (const word of words) {
    if (line.length + word.length + 1 > 100) {
      lines.push(line);
      line = '#';
    }
    line += ` ${word}`;
  }
  lines.push(line);
  return lines;
}

export function renderEnvExample(): string {
  const lines = [
    '# Environment of the LMS api, worker and lmsctl. Copy to .env and adjust.',
    '# Generated from packages/core/src/config.ts by `pnpm docs:config`; see docs/configuration.md.',
    '# Commented-out variables are optional; the value shown is the default.',
  ];
  const examples: Record<string, string> = {
    DATABASE_URL: 'postgres://lms:lms@127.0.0.1:5432/lms',
    SECRET_KEY: 'change-me-to-64-random-characters-openssl-rand-hex-32',
    LETSENCRYPT_EMAIL: 'ops@example.com',
    PROD_DATABASE_URL: 'postgres://lms:CHANGE_ME@db.example.com:5432/lms?sslmode=require',
    PROD_REDIS_URL: 'rediss://:CHANGE_ME@cache.example.com:6380/0',
  };
  for (const [group, fields] of fieldsByGroup()) {
    lines.push('', `# --- ${groupTitles[group]} ---`);
    for (const [name, field] of fields) {
      lines.push('', ...commentLines(field.description));
      if (name in examples && (name === 'DATABASE_URL' || name === 'SECRET_KEY'))
        lines.push(`${name}=${examples[name]}`);
      else if (name in examples) lines.push(`# ${name}=${examples[name]}`);
      else lines.push(`# ${name}=${field.default ?? ''}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
