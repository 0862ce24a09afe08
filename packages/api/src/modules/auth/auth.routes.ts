import type { Request } from 'express';
import { clientAddress } from '../../http/client-address.js';
import { route, type RouteDefinition } from '../../http/routes.js';
import { loginBody, refreshBody, registerBody, sessionResponse } from './auth.schema.js';
import type { AuthService } from './auth.service.js';

const client = (req: Request) => ({ userAgent: req.headers['user-agent'], ip: clientAddress(req) });

export function authRoutes(auth: AuthService): RouteDefinition[] {
  return [
    route({
      method: 'post',
      path: '/api/v1/auth/register',
      summary: 'Create a student account and sign in',
      tag: 'auth',
      access: 'public',
      rateLimit: 'auth',
      body: registerBody,
      responses: { 201: { description: 'the new account and its tokens', schema: sessionResponse } },
      handle: async ({ body, req }) => ({ status: 201, body: await auth.register(body, client(req)) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/auth/login',
      summary: 'Sign in',
      tag: 'auth',
      access: 'public',
      rateLimit: 'auth',
      body: loginBody,
      responses: { 200: { description: 'the account and fresh tokens', schema: sessionResponse } },
      handle: async ({ body, req }) => ({ body: await auth.login(body, client(req)) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/auth/refresh',
      summary: 'Trade a refresh token for a new pair (the old one stops working)',
      tag: 'auth',
      access: 'public',
      rateLimit: 'auth',
      body: refreshBody,
      responses: { 200: { description: 'a new access and refresh token', schema: sessionResponse } },
      handle: async ({ body, req }) => ({ body: await auth.refresh(body, client(req)) }),
    }),
    route({
      method: 'post',
      path: '/api/v1/auth/logout',
      summary: 'End the session the refresh token belongs to',
      tag: 'auth',
      access: 'public',
      body: refreshBody,
      responses: { 204: { description: 'signed out' } },
      handle: async ({ body, res }) => {
        await auth.logout(body);
        res.status(204).end();
        return undefined;
      },
    }),
  ];
}
