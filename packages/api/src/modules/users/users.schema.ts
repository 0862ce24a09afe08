import { z } from 'zod';
import { roles } from '../../lib/auth-user.js';

export const updateUserBody = z
  .object({ role: z.enum(roles).optional(), active: z.boolean().optional() })
  .strict()
  .refine((body) => body.role !== undefined || body.active !== undefined, 'send role and/or active');
export type UpdateUserBody = z.infer<typeof updateUserBody>;

export const userResponse = z.object({
  id: z.string(),
  email: z.string(),
  name: z.string(),
  role: z.enum(roles),
  active: z.boolean(),
  createdAt: z.string(),
  lastLoginAt: z.string().nullable(),
});
