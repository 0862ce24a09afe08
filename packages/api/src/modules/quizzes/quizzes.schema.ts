import { z } from 'zod';

const question = z
  .object({
    prompt: z.string().trim().min(1, 'must not be empty').max(2000),
    options: z.array(z.string().trim().min(1).max(500)).min(2, 'needs at least 2 options').max(20),
    correctOption: z.number().int().min(0),
  })
  .strict()
  .refine((q) => q.correctOption < q.options.length, {
    message: 'must index one of the options',
    path: ['correctOption'],
  });

export const createQuizBody = z
  .object({
    title: z.string().trim().min(1).max(200),
    passMark: z.number().int().min(0).max(100),
    questions: z.array(question).min(1, 'needs at least one question').max(100),
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
  questionCount: z.number().int(),
});

export const attemptResponse = z.object({
  id: z.string(),
  quizId: z.string(),
  score: z.number().int(),
  passed: z.boolean(),
  createdAt: z.string(),
});
