import { z } from 'zod';
import { pageQuery } from '../../lib/pagination.js';
import { idParams, route, type RouteDefinition } from '../../http/routes.js';
import { pageOf } from '../system/openapi.schemas.js';
import type { CertificatesService } from './certificates.service.js';

const certificateResponse = z.object({
  id: z.string(),
  code: z.string(),
  courseId: z.string(),
  enrollmentId: z.string(),
  courseTitle: z.string(),
  issuedAt: z.string(),
});

const verifyResponse = z.object({
  valid: z.boolean(),
  learnerName: z.string().nullable(),
  courseTitle: z.string().nullable(),
  issuedAt: z.string().nullable(),
});

export function certificatesRoutes(certificates: CertificatesService): RouteDefinition[] {
  return [
    route({
      method: 'get',
      path: '/api/v1/certificates',
      summary: 'Your certificates, newest first',
      tag: 'certificates',
      access: 'user',
      query: pageQuery,
      responses: { 200: { description: 'a page of certificates', schema: pageOf(certificateResponse) } },
      handle: async ({ user, query }) => ({ body: await certificates.list(user, query) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/certificates/verify/:code',
      summary: 'Check a certificate code (public): name, course and date only',
      tag: 'certificates',
      access: 'public',
      params: z.object({ code: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'must be a certificate code') }),
      responses: { 200: { description: 'whether the code is genuine', schema: verifyResponse } },
      handle: async ({ params }) => ({ body: await certificates.verify(params.code.toUpperCase()) }),
    }),
    route({
      method: 'get',
      path: '/api/v1/certificates/:id/pdf',
      summary: 'Download a certificate as PDF (its learner and admins)',
      tag: 'certificates',
      access: 'user',
      params: idParams,
      responses: { 200: { description: 'the PDF', contentType: 'application/pdf' } },
      handle: async ({ user, params, res }) => {
        const { file, code } = await certificates.pdf(user, params.id);
        res
          .status(200)
          .type('application/pdf')
          .setHeader('Content-Disposition', `attachment; filename="certificate-${code}.pdf"`);
        res.end(file);
        return undefined;
      },
    }),
  ];
}
