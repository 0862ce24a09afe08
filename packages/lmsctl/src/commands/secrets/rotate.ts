import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChalkInstance } from 'chalk';
import { accessTokenKeyId, secretKeyFromHex } from '@lms/core';
import { formatDuration } from '@lms/core/duration';
import type { CommandContext } from '../../context.js';
import { backupDirOf, backupKeyOf } from '../../backup/context.js';
import { keyIdOf } from '../../backup/archive/crypto.js';
import { CliError, ExitCode, findSystemError, usageError } from '../../errors.js';

export const SECRETS = ['jwt', 'webhook', 'backup'] as const;
export type SecretName = (typeof SECRETS)[number];
export const STEPS = ['generate', 'stage', 'switch', 'retire'] as const;
export type StepName = (typeof STEPS)[number];

export interface RotateOptions {
  what: SecretName;
  /** One step only; default all four. */
  step?: StepName;
  /** Write the new key to this file (created with mode 0600, never overwritten) instead of stdout. */
  out?: string;
}

export interface RotationStep {
  step: StepName;
  summary: string;
  /** Variables to set, with what to set them to (a description, never a key). */
  set: Record<string, string>;
  unset: string[];
  /** Who must get the change, and how it is rolled out (after "deploy"). */
  deploy: string | null;
  /** Commands that show the step took effect. */
  check: string[];
  notes: string[];
}

export interface RotationPlan {
  what: SecretName;
  /** Key id of the key in use now (from lmsctl's environment), when it is set there. */
  currentKeyId: string | null;
  /** Made by the generate step; `value` only when it goes to the terminal (never with --json). */
  newKey: { keyId: string; file: string | null; value?: string } | null;
  steps: RotationStep[];
}

// A deploy of the image already running rolls the new variables out one replica at a time; `up`
// would recreate every API container at once, and the rotation exists to interrupt nobody.
const DEPLOY =
  "`lmsctl deploy --image <running-image>` (the image running now, one replica at a time, Compose or Swarm; elsewhere your orchestrator's rolling update); wait until every replica runs it before the next step";

/**
 * `lmsctl secrets rotate`: the steps that replace a key without interrupting anyone — generate,
 * stage (every process learns the new key), switch (the new key is used, the old one still read),
 * retire (the old one goes) — for the chosen secret, with the variables of each step and the
 * commands that show it took effect. It changes nothing but the key file of --out.
 */
export async function rotateSecret(ctx: CommandContext, options: RotateOptions): Promise<RotationPlan> {
  const generating = options.step === undefined || options.step === 'generate';
  if (options.out !== undefined && !generating) {
    throw usageError(`--out writes the new key: it goes with the generate step, not --step ${options.step}`);
  }
  if (generating && ctx.json && options.out === undefined) {
    throw usageError('--json never carries a key: add --out <file> to write the new key to a file');
  }
  const out = options.out === undefined ? null : path.resolve(ctx.cwd, options.out);
  if (out !== null && options.what === 'backup') refuseInside(backupDirOf(ctx), out);

  const currentKeyId = await currentKeyIdOf(ctx, options.what);
  let newKey: RotationPlan['newKey'] = null;
  if (generating) {
    const value = randomBytes(32).toString('hex');
    const keyId = keyIdFor(options.what, value);
    if (out !== null) await writeKeyFile(out, value);
    newKey = out === null ? { keyId, file: null, value } : { keyId, file: out };
  }
  const names = {
    current: currentKeyId === null ? 'the key being replaced' : `the key being replaced (key id ${currentKeyId})`,
    next:
      newKey === null
        ? 'the new key'
        : `the new key (key id ${newKey.keyId}${newKey.file ? `, in ${newKey.file}` : ''})`,
  };
  const steps = PLANS[options.what](ctx, names).filter(
    (step) => options.step === undefined || step.step === options.step,
  );
  return { what: options.what, currentKeyId, newKey, steps };
}

function keyIdFor(what: SecretName, hex: string): string {
  if (what === 'jwt') return accessTokenKeyId(hex);
  if (what === 'webhook') return secretKeyFromHex(hex).id;
  return keyIdOf(Buffer.from(hex, 'hex'));
}

async function currentKeyIdOf(ctx: CommandContext, what: SecretName): Promise<string | null> {
  const { SECRET_KEY, WEBHOOK_SECRET_KEY, LMS_BACKUP_KEY_FILE } = ctx.config;
  if (what === 'jwt') return SECRET_KEY ? accessTokenKeyId(SECRET_KEY) : null;
  if (what === 'webhook') return WEBHOOK_SECRET_KEY ? secretKeyFromHex(WEBHOOK_SECRET_KEY).id : null;
  return LMS_BACKUP_KEY_FILE ? (await backupKeyOf(ctx, backupDirOf(ctx), 'secrets rotate --what backup')).keyId : null;
}

function refuseInside(dir: string, file: string): void {
  const relative = path.relative(dir, file);
  const outside = relative === '..' || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative);
  if (!outside) {
    throw usageError(
      `--out ${file} is inside the backup folder ${dir}; a key beside the backups it encrypts protects nothing`,
      'write it outside the backup folder, e.g. /etc/lms/backup-2.key',
    );
  }
}

/** Creates the file with mode 0600; an existing file is never overwritten (it may be a key still needed). */
async function writeKeyFile(file: string, hex: string): Promise<void> {
  try {
    await writeFile(file, `${hex}\n`, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    const code = findSystemError(error)?.code;
    if (code === 'EEXIST') {
      throw usageError(
        `--out ${file} already exists; nothing was written`,
        'name a new file: it may hold a key still needed',
      );
    }
    throw new CliError(
      ExitCode.failed,
      `cannot write --out ${file} (${code ?? 'unknown error'}); nothing was generated`,
    );
  }
}

type Names = { current: string; next: string };

const PLANS: Record<SecretName, (ctx: CommandContext, names: Names) => RotationStep[]> = {
  jwt: (ctx, { current, next }): RotationStep[] => {
    const ttl = formatDuration(ctx.config.ACCESS_TOKEN_TTL);
    return [
      {
        step: 'generate',
        summary: `a new SECRET_KEY: ${next}; keep it where the other secrets of the env file are kept`,
        set: {},
        unset: [],
        deploy: null,
        check: [],
        notes: ['access tokens name the key that signed them (kid), so two keys can be live at once'],
      },
      {
        step: 'stage',
        summary: 'every API replica learns the new key before any signs with it',
        set: { SECRET_KEY: `${current} (unchanged)`, SECRET_KEY_PREVIOUS: next },
        unset: [],
        deploy: `the api: ${DEPLOY}`,
        check: ['lmsctl status  (access-token keys: signed with the current kid, the new one also accepted)'],
        notes: [
          'SECRET_KEY_PREVIOUS is the other key of the rotation, whichever is newer: replicas still on the old configuration keep working, since nothing is signed with the new key yet',
        ],
      },
      {
        step: 'switch',
        summary: 'new tokens are signed with the new key; tokens of the old key are still accepted everywhere',
        set: { SECRET_KEY: next, SECRET_KEY_PREVIOUS: current },
        unset: [],
        deploy: `the api: ${DEPLOY}`,
        check: ['lmsctl status  (access-token keys: signed with the new kid, the old one also accepted)'],
        notes: ['replicas not yet switched accept the new tokens: they learnt the key in the stage step'],
      },
      {
        step: 'retire',
        summary: `the old key goes, once the switch is deployed everywhere and ACCESS_TOKEN_TTL (${ttl}) has passed since`,
        set: {},
        unset: ['SECRET_KEY_PREVIOUS'],
        deploy: `the api: ${DEPLOY}`,
        check: ['lmsctl status  (access-token keys: no other key accepted)'],
        notes: [
          'sessions survive: refresh tokens are random and stored hashed, not signed with SECRET_KEY',
          'if the old key leaked, retire without waiting: its tokens are refused at once, and clients refresh',
        ],
      },
    ];
  },
  webhook: (_ctx, { current, next }): RotationStep[] => [
    {
      step: 'generate',
      summary: `a new WEBHOOK_SECRET_KEY: ${next}; keep it where the other secrets of the env file are kept`,
      set: {},
      unset: [],
      deploy: null,
      check: [],
      notes: ['stored webhook secrets name the key that encrypted them (key id), so two keys can be live at once'],
    },
    {
      step: 'stage',
      summary: 'every process learns the new key before any encrypts with it',
      set: { WEBHOOK_SECRET_KEY: `${current} (unchanged)`, WEBHOOK_SECRET_KEY_PREVIOUS: next },
      unset: [],
      deploy: `the api, the worker and lmsctl's environment: ${DEPLOY}`,
      check: ['lmsctl status  (webhook keys: every secret under the current key)'],
      notes: ['the previous key is only read, never used to encrypt, whichever of the two is newer'],
    },
    {
      step: 'switch',
      summary: 'new secrets are encrypted with the new key; then every stored secret is re-encrypted with it',
      set: { WEBHOOK_SECRET_KEY: next, WEBHOOK_SECRET_KEY_PREVIOUS: current },
      unset: [],
      deploy: `the api, the worker and lmsctl's environment: ${DEPLOY}`,
      check: [
        'lmsctl webhooks encrypt-secrets  (re-encrypts in batches; safe to run again)',
        'lmsctl status  (webhook keys: every secret under the new key)',
      ],
      notes: ['the receivers keep their signing secrets: only the encryption at rest changes'],
    },
    {
      step: 'retire',
      summary: 'the old key goes once encrypt-secrets says no secret needs it',
      set: {},
      unset: ['WEBHOOK_SECRET_KEY_PREVIOUS'],
      deploy: `the api, the worker and lmsctl's environment: ${DEPLOY}`,
      check: ['lmsctl status  (webhook keys: no secret under a key that is not configured)'],
      notes: [
        'keep the old key (offline) as long as database backups from before the switch are kept: a restore of one brings back secrets under it; set it as WEBHOOK_SECRET_KEY_PREVIOUS again and run encrypt-secrets',
      ],
    },
  ],
  backup: (_ctx, { current, next }): RotationStep[] => [
    {
      step: 'generate',
      summary: `a new backup key file: ${next}; outside the backup folder, and a copy where the other secrets are kept`,
      set: {},
      unset: [],
      deploy: null,
      check: [],
      notes: [
        'every encrypted backup names its key (key id in its header and manifest); lmsctl reads one key file at a time',
      ],
    },
    {
      step: 'stage',
      summary: 'the new key file is put beside the old one wherever lmsctl backs up, verifies, restores or drills',
      set: {},
      unset: [],
      deploy: 'the file to those machines, or mount it into the scheduler container (mode 0600)',
      check: ['LMS_BACKUP_KEY_FILE=<the new file> lmsctl status  (backup key: the new key id)'],
      notes: ['nothing reads it yet: backups are still encrypted with the old key'],
    },
    {
      step: 'switch',
      summary: 'new backups are encrypted with the new key',
      set: { LMS_BACKUP_KEY_FILE: `the path of ${next}` },
      unset: [],
      deploy: `lmsctl's environment and the scheduler: ${DEPLOY}`,
      check: [
        'lmsctl backup --encrypt && lmsctl backup verify latest',
        'lmsctl status  (backup key: the new key id, the newest backup under it)',
      ],
      notes: [
        `backups taken before stay encrypted with ${current}: to verify, restore or drill one, run that command with LMS_BACKUP_KEY_FILE=<the old file> (lmsctl names both key ids when they differ)`,
      ],
    },
    {
      step: 'retire',
      summary: 'the old key file goes when no backup needs it any more',
      set: {},
      unset: [],
      deploy: null,
      check: ['lmsctl status  (backup key: no backup left under the old key id)'],
      notes: [
        'destroy the old key file only after `lmsctl backup prune` has removed the last backup under its key id, and no copy of one is kept off-site',
      ],
    },
  ],
};

export function renderRotation(plan: RotationPlan, style: ChalkInstance): string {
  const lines: string[] = [];
  if (plan.newKey?.value !== undefined) {
    lines.push(`new key (key id ${plan.newKey.keyId}), shown this once:`, plan.newKey.value, '');
  } else if (plan.newKey?.file) {
    lines.push(`new key (key id ${plan.newKey.keyId}) written to ${plan.newKey.file} (mode 0600)`, '');
  }
  for (const [index, step] of plan.steps.entries()) {
    if (index > 0) lines.push('');
    lines.push(style.bold(`${step.step}: ${step.summary}`));
    for (const [name, value] of Object.entries(step.set)) lines.push(`  set    ${name} = ${value}`);
    for (const name of step.unset) lines.push(`  unset  ${name}`);
    if (step.deploy) lines.push(`  deploy ${step.deploy}`);
    for (const check of step.check) lines.push(`  check  ${check}`);
    for (const note of step.notes) lines.push(style.dim(`  note   ${note}`));
  }
  return lines.join('\n');
}
