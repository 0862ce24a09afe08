import type { Express, NextFunction, Request, RequestHandler, Response } from 'express';
import { ForbiddenError, rowId, UnauthorizedError } from '@lms/core';
import { z } from 'zod';
import type { AuthUser, Role } from '../lib/auth-user.js';
import { JsonText } from '../lib/json-text.js';
import { parseInput } from './validate.js';

/** Access is spelt in roles: route declarations and their tests name them through this module. */
export type { Role };

/** `public`: anyone; `user`: any signed-in user; a role list: only those roles. */
export type Access = 'public' | 'user' | readonly Role[];

/** Who a handler is called by: anyone (null when signed out) on a public route, a signed-in user on any other. */
export type CallerOf<A extends Access> = A extends 'public' ? AuthUser | null : AuthUser;

export interface RouteInput<P, Q, B, U extends AuthUser | null = AuthUser | null> {
  params: P;
  query: Q;
  body: B;
  user: U;
  req: Request;
  res: Response;
}

/** What a handler returns: JSON with a status (default 200); `undefined` when it wrote the response itself. */
export type RouteResult = { status?: number; body: unknown } | undefined;

export interface RouteDefinition {
  method: 'get' | 'post' | 'patch' | 'delete';
  /** Express path, e.g. `/api/v1/courses/:id`. */
  path: string;
  summary: string;
  tag: string;
  access: Access;
  /** `auth`: the strict brute-force limit of login and registration. */
  rateLimit?: 'auth';
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  responses: Record<number, { description: string; schema?: z.ZodType; contentType?: string }>;
  handle(input: RouteInput<unknown, unknown, unknown>): Promise<RouteResult>;
}

/**
 * Declares a route with typed, validated input. The handler stays thin: it calls a service and
 * returns what to send; authentication, authorisation and validation happen before it runs, and
 * the same declaration feeds the OpenAPI document. Unless access is public, the handler's `user`
 * is typed non-null: `mountRoutes` has refused the request without one before the handler runs.
 */
export function route<
  const A extends Access,
  P extends z.ZodType = z.ZodUndefined,
  Q extends z.ZodType = z.ZodUndefined,
  B extends z.ZodType = z.ZodUndefined,
>(
  definition: Omit<RouteDefinition, 'access' | 'params' | 'query' | 'body' | 'handle'> & {
    access: A;
    params?: P;
    query?: Q;
    body?: B;
    handle(input: RouteInput<z.output<P>, z.output<Q>, z.output<B>, CallerOf<A>>): Promise<RouteResult>;
  },
): RouteDefinition {
  return definition;
}

export interface MountOptions {
  /** Verifies a bearer token. */
  authenticate(token: string): Promise<AuthUser>;
  /** Per-user and brute-force rate limits, applied after authentication. */
  userLimit(req: Request, res: Response, user: AuthUser): Promise<void>;
  authLimit(req: Request, res: Response): Promise<void>;
  /** Middleware every route runs first, once it matched (the per-IP limit, the body parser). */
  intake?: RequestHandler[];
  /**
   * Called before the handler of every signed-in request that may change data (any method but
   * GET), so that user's later reads are not sent to a replica that may lack the change.
   */
  beforeWrite?(user: AuthUser): Promise<void>;
}

function bearerToken(req: Request): string | null {
  const header = req.headers.authorization;
  if (!header) return null;
  const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec(header);
  if (!match) throw new UnauthorizedError('Authorization header must be "Bearer <access token>"');
  return match[1]!;
}

function allowed(access: Access, user: AuthUser | null): void {
  if (access === 'public') return;
  if (!user) throw new UnauthorizedError('sign in first: send "Authorization: Bearer <access token>"');
  if (access === 'user') return;
  if (!access.includes(user.role)) throw new ForbiddenError(`only ${access.join(' or ')} accounts may do this`);
}

/** Registers every route on the app with authentication, limits and validation in front of it. */
export function mountRoutes(app: Express, routes: RouteDefinition[], options: MountOptions): void {
  for (const definition of routes) {
    app[definition.method](
      definition.path,
      ...(options.intake ?? []),
      async (req: Request, res: Response, next: NextFunction) => {
        try {
          if (definition.rateLimit === 'auth') await options.authLimit(req, res);
          const token = bearerToken(req);
          const user = token ? await options.authenticate(token) : null;
          allowed(definition.access, user);
          if (user) await options.userLimit(req, res, user);
          if (user && definition.method !== 'get') await options.beforeWrite?.(user);
          const input: RouteInput<unknown, unknown, unknown> = {
            params: definition.params ? parseInput(definition.params, req.params, 'path') : undefined,
            query: definition.query ? parseInput(definition.query, req.query, 'query') : undefined,
            body: definition.body ? parseInput(definition.body, req.body ?? {}, 'body') : undefined,
            user,
            req,
            res,
          };
          const result = await definition.handle(input);
          if (!result) return;
          if (result.body instanceof JsonText)
            res
              .status(result.status ?? 200)
              .type('application/json')
              .send(result.body.text);
          else res.status(result.status ?? 200).json(result.body);
        } catch (error) {
          next(error);
        }
      },
    );
  }
}

/** `:id` of a path: a row id, so anything but a UUID is refused before it reaches a query. */
export const idParams = z.object({ id: rowId });
