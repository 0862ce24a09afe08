import { createHash, randomBytes } from 'node:crypto';
import { decodeProtectedHeader, errors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { accessTokenKeyId, rowId, UnauthorizedError } from '@lms/core';
import type { AuthUser, Role } from '../../lib/auth-user.js';

const ISSUER = 'lms-api';
const AUDIENCE = 'lms';
/** The only algorithm accepted: a token claiming `none` or RS256 is refused, whatever it says. */
const ALGORITHM = 'HS256';

/**
 * Signs and checks the short-lived access tokens (JWT, HS256). They are signed with SECRET_KEY
 * and carry its key id (`kid`) in the header; a token naming SECRET_KEY_PREVIOUS's id is accepted
 * too, so a key can be rotated while tokens of the other key are still out (key-rotation.md).
 */
export class AccessTokens {
  private readonly signingKey: { id: string; key: Uint8Array };
  private readonly other: { id: string; key: Uint8Array } | undefined;

  constructor(
    secret: string,
    private readonly ttlSeconds: number,
    /** SECRET_KEY_PREVIOUS: verifies, never signs. */
    otherSecret?: string,
  ) {
    const keyOf = (value: string) => ({ id: accessTokenKeyId(value), key: new TextEncoder().encode(value) });
    this.signingKey = keyOf(secret);
    this.other = otherSecret && otherSecret !== secret ? keyOf(otherSecret) : undefined;
  }

  /**
   * `issuedAt` is when the account was read that the token describes (default now). It is kept
   * to the millisecond (a fractional `iat`, which RFC 7519 allows) so the deny-list can tell a
   * token signed just before a deactivation or role change from one signed just after it.
   */
  async issue(user: { id: string; role: Role }, sessionId: string, issuedAt: Date = new Date()): Promise<string> {
    return new SignJWT({ role: user.role, sid: sessionId })
      .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT', kid: this.signingKey.id })
      .setSubject(user.id)
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt(issuedAt.getTime() / 1000)
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.signingKey.key);
  }

  /** The user a valid token names; UnauthorizedError for anything tampered, expired or foreign. */
  async verify(token: string): Promise<AuthUser> {
    return (await this.read(token)).user;
  }

  /** Like verify, with the moment the token was issued (epoch ms) for the deny-list. */
  async read(token: string): Promise<{ user: AuthUser; issuedAtMs: number }> {
    try {
      const payload = await this.verifiedPayload(token);
      const role = payload.role;
      const sub = rowId.safeParse(payload.sub);
      const sid = payload.sid === undefined ? undefined : rowId.safeParse(payload.sid);
      // The subject and session name rows: anything but a UUID would reach SQL as a 500.
      if (!sub.success || sid?.success === false || (role !== 'admin' && role !== 'instructor' && role !== 'student')) {
        throw new UnauthorizedError('access token is not valid');
      }
      // requiredClaims made jose check that iat is a number.
      return { user: { id: sub.data, role, sessionId: sid?.data }, issuedAtMs: Math.round(Number(payload.iat) * 1000) };
    } catch (error) {
      if (error instanceof UnauthorizedError) throw error;
      if (error instanceof errors.JWTExpired) throw new UnauthorizedError('access token expired; refresh it');
      throw new UnauthorizedError('access token is not valid');
    }
  }

  /**
   * The claims of a token signed by the key its `kid` names. A token without a kid comes from a
   * release before key ids: it is tried with the signing key, then with the other one, so one
   * issued just before a rotation's switch still verifies after it.
   */
  private async verifiedPayload(token: string): Promise<JWTPayload> {
    const options = {
      algorithms: [ALGORITHM],
      issuer: ISSUER,
      audience: AUDIENCE,
      // A validly signed token without an expiry would be valid forever: every one we issue has both.
      requiredClaims: ['exp', 'iat', 'sub'],
    };
    const { kid } = decodeProtectedHeader(token);
    if (kid !== undefined) {
      const key = [this.signingKey, this.other].find((candidate) => candidate?.id === kid);
      // Signed by a key this process does not hold (retired, or another deployment's).
      if (!key) throw new UnauthorizedError('access token is not valid');
      return (await jwtVerify(token, key.key, options)).payload;
    }
    try {
      return (await jwtVerify(token, this.signingKey.key, options)).payload;
    } catch (error) {
      if (!this.other || !(error instanceof errors.JWSSignatureVerificationFailed)) throw error;
      return (await jwtVerify(token, this.other.key, options)).payload;
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
