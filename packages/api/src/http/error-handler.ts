import type { NextFunction, Request, Response } from 'express';
import { AppError, isDatabaseUnavailable, maskSecretsInText, type Logger } from '@lms/core';
import { requestIdOf } from './request-id.js';

/** The JSON body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string; requestId?: string; stack?: string };
}

/** What a 503 for a database outage asks clients to wait before trying again. */
const DATABASE_RETRY_AFTER_SECONDS = 5;

interface HttpParserError {
  type?: string;
  status?: number;
  expose?: boolean;
}

/**
 * The one place errors become responses: known errors keep their status and message; body
 * parser failures become 413/400; everything else is a logged 500 that names only the request
 * id. With DEBUG off no stack, SQL or path ever leaves the process.
 */
export function errorHandler(options: { logger: Logger; debug: boolean }) {
  return (error: unknown, req: Request, res: Response, next: NextFunction): void => {
    if (res.headersSent) return next(error);
    const requestId = requestIdOf(req);
    const send = (status: number, code: string, message: string, stack?: string) => {
      const body: ErrorBody = { error: { code, message, ...(requestId ? { requestId } : {}) } };
      if (stack && options.debug) body.error.stack = maskSecretsInText(stack);
      res.status(status).json(body);
    };
    if (error instanceof AppError) {
      if (error.status >= 500) options.logger.error({ err: error, requestId }, error.message);
      return send(error.status, error.code, error.message, error.stack);
    }
    // The router could not percent-decode a path parameter (`/courses/%ff`): the client's mistake,
    // and its message quotes the raw input, so it is neither logged nor sent.
    if (error instanceof URIError) {
      return send(400, 'malformed_path', 'the request path is not valid percent-encoded UTF-8');
    }
    const parser = error as HttpParserError;
    if (parser.type === 'entity.too.large') return send(413, 'payload_too_large', 'request body is larger than 100 kB');
    if (parser.type === 'entity.parse.failed') return send(400, 'malformed_json', 'request body is not valid JSON');
    if (parser.type === 'encoding.unsupported' || parser.type === 'charset.unsupported') {
      return send(415, 'unsupported_encoding', 'request body encoding is not supported; send UTF-8 JSON');
    }
    if (typeof parser.status === 'number' && parser.status >= 400 && parser.status < 500 && parser.expose) {
      return send(parser.status, 'bad_request', 'the request could not be read');
    }
    // PostgreSQL down, frozen, overloaded or too slow: the request may succeed later, so 503 with
    // Retry-After (load balancers and clients back off) and a stable code, never the driver's text.
    if (isDatabaseUnavailable(error)) {
      options.logger.warn({ err: error, requestId }, 'database unavailable');
      res.setHeader('Retry-After', String(DATABASE_RETRY_AFTER_SECONDS));
      return send(503, 'service_unavailable', 'the service is temporarily unavailable; try again in a few seconds');
    }
    options.logger.error({ err: error, requestId }, 'unhandled error');
    send(
      500,
      'internal_error',
      `internal error; quote request id ${requestId} when reporting it`,
      error instanceof Error ? error.stack : undefined,
    );
  };
}

/** 404 for every path no route matched, in the same error shape. */
export function notFoundHandler(req: Request, res: Response): void {
  const body: ErrorBody = { error: { code: 'not_found', message: `no route for ${req.method} ${req.path}` } };
  res.status(404).json(body);
}
