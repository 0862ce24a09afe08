import argon2 from 'argon2';

/**
 * Password hashing shared by the api (register, login) and lmsctl (`user create`, `seed`):
 * argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
 */
const OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const MIN_PASSWORD_LENGTH = 10;
/** The longest password sign-in accepts; accounts made by lmsctl keep to it too. */
export const MAX_PASSWORD_LENGTH = 200;

export async function hashPassword(password: string): Promise<string> {
  return argon2.hash(password, OPTIONS);
}

/** True when `password` matches `hash`; false for a wrong password or an unreadable hash. */
export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, password);
  } catch {
    return false;
  }
}
