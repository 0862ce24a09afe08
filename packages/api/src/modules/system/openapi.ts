import { z } from 'zod';
import type { RouteDefinition } from '../../http/routes.js';
import { errorResponse } from './openapi.schemas.js';

type JsonSchema = Record<string, unknown>;

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema;
  return rest;
}

/** `/api/v1/courses/:id` → `/api/v1/courses/{id}` */
export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

const ERROR_STATUSES: Record<number, string> = {
  400: 'invalid input',
  401: 'not signed in, or the token is invalid or expired',
  403: 'signed in, but not allowed',
  404: 'not found (or not visible to you)',
  409: 'conflicts with the current state',
  413: 'request body larger than 100 kB',
  429: 'rate limited (see Retry-After)',
};

/** The OpenAPI 3.1 document of every declared route, built from the same declarations that serve them. */
export function buildOpenApi(routes: RouteDefinition[], info: { version: string }): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const parameters: unknown[] = [];
    const addParameters = (schema: z.ZodType | undefined, where: 'path' | 'query') => {
      const json = schema ? schemaOf(schema, 'input') : null;
      const properties = (json?.properties ?? {}) as Record<string, JsonSchema>;
      const required = new Set((json?.required as string[] | undefined) ?? []);
      for (const [name, property] of Object.entries(properties)) {
        parameters.push({ name, in: where, required: where === 'path' || required.has(name), schema: property });
      }
    };
    addParameters(route.params, 'path');
    addParameters(route.query, 'query');
    const responses: Record<string, unknown> = {};
    for (const [status, response] of Object.entries(route.responses)) {
      responses[status] = response.schema
        ? {
            description: response.description,
            content: { 'application/json': { schema: schemaOf(response.schema, 'output') } },
          }
        : response.contentType
          ? {
              description: response.description,
              content: { [response.contentType]: { schema: { type: 'string', format: 'binary' } } },
            }
          : { description: response.description };
    }
    const errors = [400, 404, 429, ...(route.access === 'public' ? [] : [401, 403]), ...(route.body ? [413] : []), 409];
    for (const status of errors) {
      responses[String(status)] ??= {
        description: ERROR_STATUSES[status],
        content: { 'application/json': { schema: schemaOf(errorResponse, 'output') } },
      };
    }
    (paths[openApiPath(route.path)] ??= {})[route.method] = {
      summary: route.summary,
      tags: [route.tag],
      ...(route.access === 'public' ? {} : { security: [{ bearer: [] }] }),
      ...(typeof route.access === 'object' ? { 'x-roles': route.access } : {}),
      ...(parameters.length ? { parameters } : {}),
      ...(route.body
        ? {
            requestBody: { required: true, content: { 'application/json': { schema: schemaOf(route.body, 'input') } } },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'LMS API', version: info.version },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } },
    paths,
  };
}
