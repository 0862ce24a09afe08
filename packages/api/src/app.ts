import express, { type Express, type RequestHandler } from 'express';
import { webhookSecretBox } from '@lms/core';
import type { Deps } from './deps.js';
import { errorHandler, notFoundHandler } from './http/error-handler.js';
import { httpMetrics } from './http/metrics.js';
import { createRateLimits } from './http/rate-limit.js';
import { requestLogging } from './http/request-log.js';
import { mountRoutes, type RouteDefinition } from './http/routes.js';
import { securityHeaders } from './http/security-headers.js';
import { AuditRepository } from './modules/audit/audit.repository.js';
import { authRoutes } from './modules/auth/auth.routes.js';
import { AuthService } from './modules/auth/auth.service.js';
import { SessionsRepository } from './modules/auth/sessions.repository.js';
import { TokenRevocations } from './modules/auth/token-revocations.js';
import { AccessTokens } from './modules/auth/tokens.js';
import { certificatesRoutes } from './modules/certificates/certificates.routes.js';
import { CertificatesRepository } from './modules/certificates/certificates.repository.js';
import { CertificatesService } from './modules/certificates/certificates.service.js';
import { CourseCache } from './modules/courses/courses.cache.js';
import { coursesRoutes } from './modules/courses/courses.routes.js';
import { CoursesRepository } from './modules/courses/courses.repository.js';
import { CoursesService } from './modules/courses/courses.service.js';
import { enrollmentsRoutes } from './modules/enrollments/enrollments.routes.js';
import { EnrollmentsRepository } from './modules/enrollments/enrollments.repository.js';
import { EnrollmentsService } from './modules/enrollments/enrollments.service.js';
import { quizzesRoutes } from './modules/quizzes/quizzes.routes.js';
import { QuizzesRepository } from './modules/quizzes/quizzes.repository.js';
import { QuizzesService } from './modules/quizzes/quizzes.service.js';
import { buildOpenApi } from './modules/system/openapi.js';
import { mountSystemRoutes, type MetricsSource } from './modules/system/system.routes.js';
import { usersRoutes } from './modules/users/users.routes.js';
import { UsersRepository } from './modules/users/users.repository.js';
import { UsersService } from './modules/users/users.service.js';
import { webhooksRoutes } from './modules/webhooks/webhooks.routes.js';
import { WebhooksRepository } from './modules/webhooks/webhooks.repository.js';
import { WebhooksService } from './modules/webhooks/webhooks.service.js';

export { createDeps, closeDeps, type Deps } from './deps.js';

export interface AppOptions {
  /** Where /metrics gets its text: this process's registry, or the cluster primary's aggregate. */
  metrics?: MetricsSource;
  version?: string;
}

function trustProxy(value: string): boolean | number | string {
  if (value === 'true' || value === 'false') return value === 'true';
  return /^\d+$/.test(value) ? Number(value) : value;
}

/** Every route of the API, built on the services (the composition root of one process). */
export function buildRoutes(deps: Deps, tokens: AccessTokens, revocations: TokenRevocations): RouteDefinition[] {
  const { config } = deps;
  const audit = new AuditRepository(deps.db);
  const usersRepository = new UsersRepository(deps.db);
  const coursesRepository = new CoursesRepository(deps.db);
  const sessions = new SessionsRepository(deps.db);
  const auth = new AuthService(
    usersRepository,
    sessions,
    tokens,
    revocations,
    deps.db.primary,
    deps.metrics,
    config.REFRESH_TOKEN_TTL,
  );
  const cache = new CourseCache(
    deps.redis,
    deps.subscriber,
    deps.redisPrefix,
    config.CACHE_TTL_SECONDS,
    deps.metrics,
    deps.logger,
  );
  return [
    ...authRoutes(auth),
    ...usersRoutes(new UsersService(usersRepository, sessions, audit, revocations)),
    ...coursesRoutes(new CoursesService(coursesRepository, cache, audit)),
    ...enrollmentsRoutes(
      new EnrollmentsService(new EnrollmentsRepository(deps.db), coursesRepository, deps.metrics, deps.db.primary),
    ),
    ...quizzesRoutes(new QuizzesService(new QuizzesRepository(deps.db), coursesRepository, deps.metrics)),
    ...certificatesRoutes(new CertificatesService(new CertificatesRepository(deps.db), config.CERTIFICATE_STORAGE_DIR)),
    ...webhooksRoutes(
      new WebhooksService(new WebhooksRepository(deps.db), audit, {
        production: config.NODE_ENV === 'production',
        allowPrivateTargets: config.WEBHOOK_ALLOW_PRIVATE_TARGETS,
        secretBox: webhookSecretBox(config),
      }),
    ),
  ];
}

/** The Express application, without listening: main.ts serves it, the tests drive it directly. */
export function createApp(deps: Deps, options: AppOptions = {}): Express {
  const { config } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', trustProxy(config.TRUST_PROXY));

  // Probes and scrapes every few seconds would drown the request log, and are not user traffic.
  const probes = new Set(['/health', '/ready', config.METRICS_PATH]);
  app.use(requestLogging({ logger: deps.logger, quietPaths: probes }));
  app.use(securityHeaders());
  app.use(httpMetrics(deps.metrics, { probes }));

  const ownMetrics: MetricsSource = async () => ({
    contentType: deps.metrics.registry.contentType,
    text: await deps.metrics.registry.metrics(),
  });
  const limits = createRateLimits(deps.redis, config, deps.redisPrefix, deps);
  mountSystemRoutes(app, deps, options.metrics ?? ownMetrics, limits);

  const perIp: RequestHandler = (req, res, next) => {
    limits.perIp(req, res).then(() => next(), next);
  };
  // The per-IP limit and the body parser run once the route is known, so a 429, 400 or 413 is
  // counted and logged under the route that was asked for, not as `unmatched`.
  const intake = [perIp, express.json({ limit: '100kb' })];

  // One signer for the routes that issue tokens and the middleware that checks them.
  const tokens = new AccessTokens(config.SECRET_KEY, config.ACCESS_TOKEN_TTL / 1000, config.SECRET_KEY_PREVIOUS);
  const revocations = new TokenRevocations(deps.redis, deps.redisPrefix, config.ACCESS_TOKEN_TTL, deps.logger);
  const routes = buildRoutes(deps, tokens, revocations);
  mountRoutes(app, routes, {
    // Signature and claims first (no Redis trip for a forged token), then the deny-list.
    authenticate: async (token) => {
      const { user, issuedAtMs } = await tokens.read(token);
      await revocations.check(user, issuedAtMs);
      return user;
    },
    userLimit: (req, res, user) => limits.perUser(req, res, user.id),
    authLimit: (req, res) => limits.auth(req, res),
    beforeWrite: (user) => deps.db.read.noteWrite(user.id),
    intake,
  });
  const openApi = buildOpenApi(routes, { version: options.version ?? '1' });
  app.get('/api/v1/openapi.json', perIp, (_req, res) => {
    res.json(openApi);
  });

  // Paths no route matches are limited per IP too (scanners), before their 404.
  app.use(perIp);
  app.use(notFoundHandler);
  app.use(errorHandler({ logger: deps.logger, debug: config.DEBUG }));
  return app;
}
