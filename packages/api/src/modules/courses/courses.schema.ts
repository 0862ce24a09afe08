import { z } from 'zod';
import { pageQuery } from '../../lib/pagination.js';
import { safeText } from '../../lib/safe-text.js';

const title = safeText().trim().min(1, 'must not be empty').max(200);
const description = safeText().max(20_000);

export const createCourseBody = z.object({ title, description: description.default('') }).strict();
export type CreateCourseBody = z.infer<typeof createCourseBody>;

export const updateCourseBody = z
  .object({ title: title.optional(), description: description.optional() })
  .strict()
  .refine((body) => body.title !== undefined || body.description !== undefined, 'send title and/or description');
export type UpdateCourseBody = z.infer<typeof updateCourseBody>;

export const listCoursesQuery = pageQuery.extend({
  mine: z.enum(['true', 'false']).optional(),
});
export type ListCoursesQuery = z.infer<typeof listCoursesQuery>;

export const createLessonBody = z.object({ title, body: safeText().max(100_000).default('') }).strict();
export type CreateLessonBody = z.infer<typeof createLessonBody>;

export const courseResponse = z.object({
  id: z.string(),
  title: z.string(),
  description: z.string(),
  status: z.enum(['draft', 'published', 'archived']),
  instructorId: z.string(),
  publishedAt: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const lessonResponse = z.object({
  id: z.string(),
  courseId: z.string(),
  position: z.number().int(),
  title: z.string(),
  body: z.string().nullable(),
  createdAt: z.string(),
});
