import { MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH } from '@lms/core/passwords';
import { z } from 'zod';
import { userResponse } from '../users/users.schema.js';
import { safeText } from '../../lib/safe-text.js';

const email = safeText()
  .trim()
  .toLowerCase()
  .max(320)
  .pipe(z.email({ error: 'must be an e-mail address' }));

export const registerBody = z.object({
  email,
  password: safeText()
    .min(MIN_PASSWORD_LENGTH, `must be at least ${MIN_PASSWORD_LENGTH} characters`)
    .max(MAX_PASSWORD_LENGTH),
  name: safeText().trim().min(1, 'must not be empty').max(200),
});
export type RegisterBody = z.infer<typeof registerBody>;

export const loginBody = z.object({ email, password: safeText().min(1).max(MAX_PASSWORD_LENGTH) });
export type LoginBody = z.infer<typeof loginBody>;

export const refreshBody = z.object({ refreshToken: safeText().min(20).max(200) });
export type RefreshBody = z.infer<typeof refreshBody>;

export const sessionResponse = z.object({
  user: userResponse.pick({ id: true, email: true, name: true, role: true }),
  accessToken: z.string(),
  refreshToken: z.string(),
});
