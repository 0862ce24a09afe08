import { z } from 'zod';
import { safeText } from '../../lib/safe-text.js';

const question = z
  .object({
    prompt: safeText().trim().min(1, 'must not be empty').max(2000),
    options: z.array(safeText().trim().min(1).max(500)).min(2, 'needs at least 2 options').max(20),
    correctOption: z.number().int().min(0),
  })
  .strict()
  .refine((q) => q.correctOption < q.options.length, {
    message: 'must index one of the options',
    path: ['correctOption'],
  });

/**
 * When an attempt's result shows which answers were right. Until then it shows the score only:
 * a per-question verdict (or a score with unlimited retries) lets a learner read the key off it.
 * `never`; `after_pass`: once the learner passed; `after_last_attempt` (default): once the learner
 * passed or has no attempts left, when the review can no longer improve a score.
 */
export const revealAnswers = z.enum(['never', 'after_pass', 'after_last_attempt']);
export type RevealAnswers = z.infer<typeof revealAnswers>;

export const createQuizBody = z
  .object({
    title: safeText().trim().min(1).max(200),
    passMark: z.number().int().min(0).max(100),
    questions: z.array(question).min(1, 'needs at least one question').max(100),
    maxAttempts: z.number().int().min(1).max(100).default(3).describe('attempts per learner (1–100, default 3)'),
    cooldownSeconds: z
      .number()
      .int()
      .min(0)
      .max(604800)
      .default(0)
      .describe('seconds a learner waits between attempts (0–604800, default 0)'),
    revealAnswers: revealAnswers.default('after_last_attempt'),
  })
  .strict();
export type CreateQuizBody = z.infer<typeof createQuizBody>;

export const attemptBody = z.object({ answers: z.array(z.number().int().min(0)).max(100) }).strict();
export type AttemptBody = z.infer<typeof attemptBody>;

export const quizResponse = z.object({
  id: z.string(),
  courseId: z.string(),
  title: z.string(),
  passMark: z.number().int(),
  maxAttempts: z.number().int(),
  cooldownSeconds: z.number().int(),
  revealAnswers,
  questions: z.array(
    z.object({
      id: z.string(),
      position: z.number().int(),
      prompt: z.string(),
      options: z.array(z.string()),
      correctOption: z.number().int().optional().describe('only for the instructor and admins'),
    }),
  ),
});

export const quizSummaryResponse = z.object({
  id: z.string(),
  courseId: z.string(),
  title: z.string(),
  passMark: z.number().int(),
  maxAttempts: z.number().int(),
  cooldownSeconds: z.number().int(),
  revealAnswers,
  questionCount: z.number().int(),
});

export const attemptResponse = z.object({
  id: z.string(),
  quizId: z.string(),
  score: z.number().int(),
  passed: z.boolean(),
  createdAt: z.string(),
  attemptsUsed: z.number().int(),
  attemptsRemaining: z.number().int(),
  nextAttemptAt: z.string().nullable().describe('when the cooldown lets the next attempt in; null: now, or none left'),
  review: z
    .array(
      z.object({
        questionId: z.string(),
        chosenOption: z.number().int(),
        correctOption: z.number().int(),
        correct: z.boolean(),
      }),
    )
    .nullable()
    .describe("which answers were right; null until the quiz's revealAnswers allows it"),
});
