import { pageQuery } from '../../lib/pagination.js';
import { idParams, route, type RouteDefinition } from '../../http/routes.js';
import { pageOf } from '../system/openapi.schemas.js';
import { completeLessonParams, enrollmentResponse } from './enrollments.schema.js';
import type { EnrollmentsService } from './enrollments.service.js';

export function enrollmentsRoutes(enrollments: EnrollmentsService): RouteDefinition[] {
  return [
    route({
      method: 'post',
      path: '/api/v1/courses/:id/enroll',
      summary: 'Enrol in a published course (again: the existing enrolment, 200)',
      tag: 'enrollments',
      access: 'user',
      params: idParams,
      responses: {
        201: { description: 'enrolled', schema: enrollmentResponse },
        200: { description: 'already enrolled', schema: enrollmentResponse },
      },
      handle: async ({ user, params }) => {
        const { created, enrollment } = await enrollments.enroll(user, params.id);
        return { status: created ? 201 : 200, body: enrollment };
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/enrollments',
      summary: 'Your enrolments, newest first',
      tag: 'enrollments',
      access: 'user',
      query: pageQuery,
      responses: { 200: { description: 'a page of enrolments', schema: pageOf(enrollmentResponse) } },
      handle: async ({ user, query }) => ({ body: await enrollments.list(user, query) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/enrollments/:id/lessons/:lessonId/complete',
      summary: 'Mark a lesson of your enrolment complete (progress settles through the worker)',
      tag: 'enrollments',
      access: 'user',
      params: completeLessonParams,
      responses: { 200: { description: 'the enrolment', schema: enrollmentResponse } },
      handle: async ({ user, params }) => ({
        body: await enrollments.completeLesson(user, params.id, params.lessonId),
      }),
    }),
  ];
}
