import { createHash, randomBytes } from 'node:crypto';
import { errors, jwtVerify, SignJWT } from 'jose';
import { rowId, UnauthorizedError } from '@lms/core';
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
        // A validly signed token without an expiry would be valid forever: every one we issue has both.
        requiredClaims: ['exp', 'iat', 'sub'],
      });
      const role = payload.role;
      const sub = rowId.safeParse(payload.sub);
      const sid = payload.sid === undefined ? undefined : rowId.safeParse(payload.sid);
      // The subject and session name rows: anything but a UUID would reach SQL as a 500.
      if (!sub.success || sid?.success === false || (role !== 'admin' && role !== 'instructor' && role !== 'student')) {
        throw new UnauthorizedError('access token is not valid');
      }
      return { id: sub.data, role, sessionId: sid?.data };
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
