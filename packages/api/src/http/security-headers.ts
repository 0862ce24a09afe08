import helmet from 'helmet';

/**
 * Security headers on every response: nosniff, frames denied, no referrer, a CSP that allows
 * nothing (the API serves JSON and PDFs, never pages), `X-XSS-Protection: 0`. Caddy in front
 * passes them unchanged and sets none of them itself, so these are the values clients get.
 *
 * No HSTS: the API sees plain HTTP behind the TLS terminator and cannot tell whether a response
 * leaves over HTTPS, nor for which domain `includeSubDomains` would speak; Caddy, which
 * terminates TLS for APP_DOMAIN, sends it (ops/caddy/Caddyfile).
 */
export function securityHeaders() {
  return helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: false,
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
}
