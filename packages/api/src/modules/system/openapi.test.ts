import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, createTestApi, type TestApi } from '../../testing/test-app.js';
import { openApiPath } from './openapi.js';

let api: TestApi;

beforeAll(async () => {
  api = await createTestApi();
});

afterAll(async () => {
  await api.close();
});

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
}

/** Every method+path the Express app really serves under /api/v1. */
function servedRoutes(app: Express): string[] {
  const stack = (app as unknown as { router: { stack: Layer[] } }).router.stack;
  return stack
    .filter(
      (layer) => layer.route && layer.route.path.startsWith('/api/v1/') && layer.route.path !== '/api/v1/openapi.json',
    )
    .flatMap((layer) =>
      Object.keys(layer.route!.methods).map((method) => `${method.toUpperCase()} ${openApiPath(layer.route!.path)}`),
    )
    .sort();
}

describe('/api/v1/openapi.json', () => {
  it('is an OpenAPI 3.1 document of exactly the routes the app serves', async () => {
    const response = await call(api, 'get', '/api/v1/openapi.json');
    expect(response.status).toBe(200);
    const document = response.body as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(document.openapi).toBe('3.1.0');
    const documented = Object.entries(document.paths)
      .flatMap(([path, methods]) => Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`))
      .sort();
    expect(documented).toEqual(servedRoutes(api.app));
    expect(documented.length).toBeGreaterThanOrEqual(30);
  });

  it('describes parameters, bodies, responses and who may call', async () => {
    const { paths } = (await call(api, 'get', '/api/v1/openapi.json')).body as {
      paths: Record<
        string,
        Record<
          string,
          {
            parameters?: Array<{ name: string; in: string }>;
            requestBody?: unknown;
            responses: Record<string, unknown>;
            security?: unknown;
            'x-roles'?: string[];
          }
        >
      >;
    };
    const create = paths['/api/v1/courses/{id}/quizzes']!.post!;
    expect(create.parameters).toEqual([expect.objectContaining({ name: 'id', in: 'path' })]);
    expect(create.requestBody).toBeDefined();
    expect(Object.keys(create.responses)).toEqual(expect.arrayContaining(['201', '400', '401', '403', '404']));
    expect(create['x-roles']).toEqual(['admin', 'instructor']);
    expect(paths['/api/v1/certificates/verify/{code}']!.get!.security).toBeUndefined();
    expect(paths['/api/v1/courses']!.get!.parameters!.map((parameter) => parameter.name)).toEqual([
      'limit',
      'cursor',
      'mine',
    ]);
  });
});
