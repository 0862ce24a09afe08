import { pageQuery } from '../../lib/pagination.js';
import { idParams, route, type RouteDefinition } from '../../http/routes.js';
import { pageOf } from '../system/openapi.schemas.js';
import { updateUserBody, userResponse } from './users.schema.js';
import type { UsersService } from './users.service.js';
import { requestIdOf } from '../../http/request-id.js';

export function usersRoutes(users: UsersService): RouteDefinition[] {
  return [
    route({
      method: 'get',
      path: '/api/v1/users/me',
      summary: 'The signed-in user',
      tag: 'users',
      access: 'user',
      responses: { 200: { description: 'the account', schema: userResponse } },
      handle: async ({ user }) => ({ body: await users.me(user) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/users',
      summary: 'List users (admin)',
      tag: 'users',
      access: ['admin'],
      query: pageQuery,
      responses: { 200: { description: 'a page of users', schema: pageOf(userResponse) } },
      handle: async ({ user, query }) => ({ body: await users.list(user, query) }),
    }),
    route({
      method: 'patch',
      path: '/api/v1/users/:id',
      summary: "Change a user's role or deactivate them (admin)",
      tag: 'users',
      access: ['admin'],
      params: idParams,
      body: updateUserBody,
      responses: { 200: { description: 'the updated account', schema: userResponse } },
      handle: async ({ user, params, body, req }) => ({
        body: await users.update(user, params.id, body, requestIdOf(req)),
      }),
    }),
  ];
}
