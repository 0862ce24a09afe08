import { z } from 'zod';
import { idParams, route, type RouteDefinition } from '../../http/routes.js';
import { pageOf } from '../system/openapi.schemas.js';
import {
  courseResponse,
  createCourseBody,
  createLessonBody,
  lessonResponse,
  listCoursesQuery,
  updateCourseBody,
} from './courses.schema.js';
import type { CoursesService } from './courses.service.js';
import { requestIdOf } from '../../http/request-id.js';

const managers = ['admin', 'instructor'] as const;

export function coursesRoutes(courses: CoursesService): RouteDefinition[] {
  return [
    route({
      method: 'get',
      path: '/api/v1/courses',
      summary: 'Published courses, newest first (mine=true: the courses you manage, any status)',
      tag: 'courses',
      access: 'public',
      query: listCoursesQuery,
      responses: { 200: { description: 'a page of courses', schema: pageOf(courseResponse) } },
      handle: async ({ user, query }) => ({ body: await courses.list(user, query) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/courses',
      summary: 'Create a draft course',
      tag: 'courses',
      access: managers,
      body: createCourseBody,
      responses: { 201: { description: 'the new draft', schema: courseResponse } },
      handle: async ({ user, body }) => ({ status: 201, body: await courses.create(user, body) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/courses/:id',
      summary: 'A course (drafts only for their instructor and admins)',
      tag: 'courses',
      access: 'public',
      params: idParams,
      responses: { 200: { description: 'the course', schema: courseResponse } },
      handle: async ({ user, params }) => ({ body: await courses.get(user, params.id) }),
    }),
    route({
      method: 'patch',
      path: '/api/v1/courses/:id',
      summary: "Change a course's title or description",
      tag: 'courses',
      access: managers,
      params: idParams,
      body: updateCourseBody,
      responses: { 200: { description: 'the course', schema: courseResponse } },
      handle: async ({ user, params, body }) => ({ body: await courses.update(user, params.id, body) }),
    }),
    route({
      method: 'delete',
      path: '/api/v1/courses/:id',
      summary: 'Delete a course (instructors: only without enrolments)',
      tag: 'courses',
      access: managers,
      params: idParams,
      responses: { 204: { description: 'deleted' } },
      handle: async ({ user, params, req, res }) => {
        await courses.delete(user, params.id, requestIdOf(req));
        res.status(204).end();
        return undefined;
      },
    }),
    route({
      method: 'post',
      path: '/api/v1/courses/:id/publish',
      summary: 'Publish a course (it needs at least one lesson)',
      tag: 'courses',
      access: managers,
      params: idParams,
      responses: { 200: { description: 'the published course', schema: courseResponse } },
      handle: async ({ user, params, req }) => ({ body: await courses.publish(user, params.id, requestIdOf(req)) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/courses/:id/lessons',
      summary: "A course's lessons in order (bodies for enrolled learners, the instructor and admins)",
      tag: 'courses',
      access: 'public',
      params: idParams,
      responses: {
        200: { description: 'the lessons', schema: z.object({ items: z.array(lessonResponse), nextCursor: z.null() }) },
      },
      handle: async ({ user, params }) => ({ body: await courses.lessons(user, params.id) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/courses/:id/lessons',
      summary: 'Add a lesson at the end of a course',
      tag: 'courses',
      access: managers,
      params: idParams,
      body: createLessonBody,
      responses: { 201: { description: 'the new lesson', schema: lessonResponse } },
      handle: async ({ user, params, body }) => ({
        status: 201,
        body: await courses.addLesson(user, params.id, body),
      }),
    }),
  ];
}
