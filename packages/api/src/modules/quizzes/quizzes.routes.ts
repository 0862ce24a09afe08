import { z } from 'zod';
import { idParams, route, type RouteDefinition } from '../../http/routes.js';
import { errorResponse } from '../system/openapi.schemas.js';
import { attemptBody, attemptResponse, createQuizBody, quizResponse, quizSummaryResponse } from './quizzes.schema.js';
import { QuizCooldownError, type QuizzesService } from './quizzes.service.js';

export function quizzesRoutes(quizzes: QuizzesService): RouteDefinition[] {
  return [
    route({
      method: 'post',
      path: '/api/v1/courses/:id/quizzes',
      summary: 'Add a quiz with its questions to a course',
      tag: 'quizzes',
      access: ['admin', 'instructor'],
      params: idParams,
      body: createQuizBody,
      responses: { 201: { description: 'the quiz, with the correct options', schema: quizResponse } },
      handle: async ({ user, params, body }) => ({ status: 201, body: await quizzes.create(user, params.id, body) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/courses/:id/quizzes',
      summary: "A course's quizzes",
      tag: 'quizzes',
      access: 'public',
      params: idParams,
      responses: {
        200: {
          description: 'the quizzes',
          schema: z.object({ items: z.array(quizSummaryResponse), nextCursor: z.null() }),
        },
      },
      handle: async ({ user, params }) => ({ body: await quizzes.list(user, params.id) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/quizzes/:id',
      summary: 'A quiz (correct options only for the instructor and admins)',
      tag: 'quizzes',
      access: 'user',
      params: idParams,
      responses: { 200: { description: 'the quiz', schema: quizResponse } },
      handle: async ({ user, params }) => ({ body: await quizzes.get(user, params.id) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/quizzes/:id/attempts',
      summary:
        "Answer a quiz (one option index per question); scored on the server, within the quiz's attempt limit and cooldown",
      tag: 'quizzes',
      access: 'user',
      params: idParams,
      body: attemptBody,
      responses: {
        201: {
          description:
            "the score (0–100), whether it passed and the attempts left; which answers were right only once the quiz's revealAnswers allows it",
          schema: attemptResponse,
        },
        409: {
          description: '`quiz_attempts_exhausted`: no attempts left, or the answers were revealed to you (you passed)',
          schema: errorResponse,
        },
        429: { description: '`quiz_cooldown` (see Retry-After), or rate limited', schema: errorResponse },
      },
      handle: async ({ user, params, body, res }) => {
        try {
          return { status: 201, body: await quizzes.attempt(user, params.id, body) };
        } catch (error) {
          // The cooldown says when to come back, as the rate limits do.
          if (error instanceof QuizCooldownError) res.setHeader('Retry-After', String(error.retryAfterSeconds));
          throw error;
        }
      },
    }),
  ];
}
