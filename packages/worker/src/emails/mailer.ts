import nodemailer from 'nodemailer';

export interface OutgoingEmail {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** Extra headers (e.g. the idempotency key, for tracing a message back to its job). */
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** Sends email over SMTP; the one place that knows about nodemailer. */
export interface Mailer {
  /** Sends one message and returns the Message-ID the server accepted. */
  send(message: OutgoingEmail): Promise<string>;
  close(): void;
}

/**
 * A pooled SMTP transport for SMTP_URL (`smtp://` or `smtps://`, credentials in the URL):
 * connections are reused across jobs and every wait is bounded, so a dead mail server fails
 * the job (and it is retried) instead of hanging it until the time limit.
 */
export function createMailer(options: { url: string; from: string; timeoutMs?: number }): Mailer {
  const timeout = options.timeoutMs ?? 30_000;
  const transport = nodemailer.createTransport({
    url: options.url,
    pool: true,
    maxConnections: 2,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
  });
  return {
    async send(message) {
      const info = await transport.sendMail({
        from: options.from,
        to: message.to,
        subject: message.subject,
        text: message.text,
        html: message.html,
        headers: message.headers,
        signal: message.signal,
      });
      return info.messageId;
    },
    close() {
      transport.close();
    },
  };
}
