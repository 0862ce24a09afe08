import { z } from 'zod';
import { rowId } from '@lms/core';

export const completeLessonParams = z.object({ id: rowId, lessonId: rowId });

export const enrollmentResponse = z.object({
  id: z.string(),
  courseId: z.string(),
  userId: z.string(),
  status: z.enum(['active', 'completed', 'cancelled']),
  progress: z.number().min(0).max(100),
  enrolledAt: z.string(),
  completedAt: z.string().nullable(),
  lastActivityAt: z.string(),
});
