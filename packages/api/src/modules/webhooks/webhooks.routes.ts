import { z } from 'zod';
import { pageQuery } from '../../lib/pagination.js';
import { idParams, route, type RouteDefinition } from '../../http/routes.js';
import { pageOf } from '../system/openapi.schemas.js';
import {
  createdWebhookResponse,
  createWebhookBody,
  deliveryResponse,
  updateWebhookBody,
  webhookResponse,
} from './webhooks.schema.js';
import type { WebhooksService } from './webhooks.service.js';
import { requestIdOf } from '../../http/request-id.js';

const admin = ['admin'] as const;

export function webhooksRoutes(webhooks: WebhooksService): RouteDefinition[] {
  return [
    route({
      method: 'post',
      path: '/api/v1/webhooks',
      summary: 'Subscribe a URL to events; the response carries the signing secret, once',
      tag: 'webhooks',
      access: admin,
      body: createWebhookBody,
      responses: { 201: { description: 'the subscription and its secret', schema: createdWebhookResponse } },
      handle: async ({ user, body, req }) => ({
        status: 201,
        body: await webhooks.create(user, body, requestIdOf(req)),
      }),
    }),
    route({
      method: 'get',
      path: '/api/v1/webhooks',
      summary: 'Webhook subscriptions, with failure streaks and why any were disabled',
      tag: 'webhooks',
      access: admin,
      responses: {
        200: {
          description: 'the subscriptions',
          schema: z.object({ items: z.array(webhookResponse), nextCursor: z.null() }),
        },
      },
      handle: async ({ user }) => ({ body: await webhooks.list(user) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/webhooks/:id',
      summary: 'A webhook subscription',
      tag: 'webhooks',
      access: admin,
      params: idParams,
      responses: { 200: { description: 'the subscription', schema: webhookResponse } },
      handle: async ({ params }) => ({ body: await webhooks.get(params.id) }),
    }),
    route({
      method: 'patch',
      path: '/api/v1/webhooks/:id',
      summary: 'Change a subscription (active: true re-enables a disabled one)',
      tag: 'webhooks',
      access: admin,
      params: idParams,
      body: updateWebhookBody,
      responses: { 200: { description: 'the subscription', schema: webhookResponse } },
      handle: async ({ user, params, body, req }) => ({
        body: await webhooks.update(user, params.id, body, requestIdOf(req)),
      }),
    }),
    route({
      method: 'delete',
      path: '/api/v1/webhooks/:id',
      summary: 'Delete a subscription and its delivery records',
      tag: 'webhooks',
      access: admin,
      params: idParams,
      responses: { 204: { description: 'deleted' } },
      handle: async ({ user, params, req, res }) => {
        await webhooks.delete(user, params.id, requestIdOf(req));
        res.status(204).end();
        return undefined;
      },
    }),
    route({
      method: 'get',
      path: '/api/v1/webhooks/:id/deliveries',
      summary: 'Delivery attempts of a subscription, newest first',
      tag: 'webhooks',
      access: admin,
      params: idParams,
      query: pageQuery,
      responses: { 200: { description: 'a page of delivery attempts', schema: pageOf(deliveryResponse) } },
      handle: async ({ user, params, query }) => ({ body: await webhooks.deliveries(user, params.id, query) }),
    }),
  ];
}
