import helmet from 'helmet';

/**
 * Security headers on every response: nosniff, frames denied, no referrer, a CSP that allows
 * nothing (the API serves JSON and PDFs, never pages), HSTS in production only (behind TLS).
 */
export function securityHeaders(production: boolean) {
  return helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: production ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
}
