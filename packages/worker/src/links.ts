/** Public base URL of the LMS for links in emails and certificates (Caddy serves APP_DOMAIN over HTTPS). */
export function appUrl(appDomain: string): string {
  return `https://${appDomain}`;
}

/** The public page that confirms a certificate by its code. */
export function certificateVerifyUrl(appDomain: string, code: string): string {
  return `${appUrl(appDomain)}/api/v1/certificates/verify/${encodeURIComponent(code)}`;
}
