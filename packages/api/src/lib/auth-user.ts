/** An account's role; the users table's CHECK constraint allows exactly these. */
export type Role = 'admin' | 'instructor' | 'student';
export const roles = ['admin', 'instructor', 'student'] as const satisfies readonly Role[];

/** Who is calling, from a verified access token. */
export interface AuthUser {
  id: string;
  role: Role;
  sessionId?: string;
}
