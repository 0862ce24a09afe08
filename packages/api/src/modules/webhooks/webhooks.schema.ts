import { webhookEventTypes } from '@lms/core';
import { z } from 'zod';
import { safeText } from '../../lib/safe-text.js';

const url = safeText()
  .max(2000)
  .refine((value) => URL.canParse(value) && /^https?:$/.test(new URL(value).protocol), 'must be an http(s) URL');
const events = z
  .array(z.enum(webhookEventTypes))
  .min(1, 'subscribe to at least one event')
  .max(webhookEventTypes.length);

export const createWebhookBody = z.object({ url, events, description: safeText().max(500).default('') }).strict();
export type CreateWebhookBody = z.infer<typeof createWebhookBody>;

export const updateWebhookBody = z
  .object({
    url: url.optional(),
    events: events.optional(),
    description: safeText().max(500).optional(),
    active: z.boolean().optional(),
  })
  .strict()
  .refine((body) => Object.keys(body).length > 0, 'send at least one of url, events, description, active');
export type UpdateWebhookBody = z.infer<typeof updateWebhookBody>;

export const webhookResponse = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(z.enum(webhookEventTypes)),
  description: z.string(),
  active: z.boolean(),
  consecutiveFailures: z.number().int(),
  disabledAt: z.string().nullable(),
  disabledReason: z.string().nullable().describe('why the worker disabled it, e.g. after repeated failures'),
  createdAt: z.string(),
});

export const createdWebhookResponse = webhookResponse.extend({
  secret: z.string().describe('HMAC-SHA256 signing secret; shown only in this response'),
});

export const deliveryResponse = z.object({
  id: z.string(),
  eventId: z.string(),
  eventType: z.string(),
  attempt: z.number().int(),
  status: z.enum(['succeeded', 'failed']),
  responseStatus: z.number().int().nullable(),
  durationMs: z.number().int(),
  error: z.string().nullable(),
  createdAt: z.string(),
});
