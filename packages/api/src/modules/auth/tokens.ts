import { createHash, randomBytes } from 'node:crypto';
import { errors, jwtVerify, SignJWT } from 'jose';
import { UnauthorizedError } from '@lms/core';
import type { AuthUser, Role } from '../../lib/auth-user.js';

const ISSUER = 'lms-api';
const AUDIENCE = 'lms';
/** The only algorithm accepted: a token claiming `none` or RS256 is refused, whatever it says. */
const ALGORITHM = 'HS256';

/** Signs and checks the short-lived access tokens (JWT, HS256 with SECRET_KEY). */
export class AccessTokens {
  private readonly key: Uint8Array;

  constructor(
    secret: string,
    private readonly ttlSeconds: number,
  ) {
    this.key = new TextEncoder().encode(secret);
  }

  async issue(user: { id: string; role: Role }, sessionId: string): Promise<string> {
    return new SignJWT({ role: user.role, sid: sessionId })
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
      .setSubject(user.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.key);
  }

  /** The user a valid token names; UnauthorizedError for anything tampered, expired or foreign. */
  async verify(token: string): Promise<AuthUser> {
    try {
      const { payload } = await jwtVerify(token, this.key, {
        algorithms: [ALGORITHM],
        issuer: ISSUER,
        audience: AUDIENCE,
      });
      const role = payload.role;
      if (typeof payload.sub !== 'string' || (role !== 'admin' && role !== 'instructor' && role !== 'student')) {
        throw new UnauthorizedError('access token is not valid');
      }
      return { id: payload.sub, role, sessionId: typeof payload.sid === 'string' ? payload.sid : undefined };
    } catch (error) {
      if (error instanceof UnauthorizedError) throw error;
      if (error instanceof errors.JWTExpired) throw new UnauthorizedError('access token expired; refresh it');
      throw new UnauthorizedError('access token is not valid');
    }
  }
}

/** A new opaque refresh token; only its hash is stored. */
export function newRefreshToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
