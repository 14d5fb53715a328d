import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { AppContext } from '../../context.js';
import { commandIntake, getCommandStatus } from '../../commands/log.js';
import { errorReply, HttpError } from '../errors.js';
import { isDatabaseUnavailable } from '../../db/errors.js';
import { pingDatabase } from '../../db/read-store.js';
import { batchSchema, postingScopes, idPattern, parseCommand, parseCommands, toIssues, type Command, type Issue } from '../../commands/schemas.js';
import { addMonths, monthRange } from '../../domain/credit.js';
import { creditReport, monthOf } from '../../commands/credit.js';
import { authenticate, authorize, authorizeCommands, canActOn, hasScope, TokenRegistry } from './auth.js';
import { createHash, randomUUID } from 'node:crypto';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { openApiDocument } from './openapi.js';
import { registerGrantRoutes } from './grants.js';
import { registerQueueDashboard } from './dashboard.js';
import { registerAuditRoutes } from './audit.js';
import { registerWebApp } from './app/index.js';
import { getClient, getDashboard, listClients, listConflicts, listEmployees, partnerExists } from './reads.js';
import { listRenewals, listRequests, parseRequestsQuery } from './lifecycle-reads.js';

export interface ServerOptions {
  registry: TokenRegistry;
  /** Readiness of the other roles in this process (workers consuming). */
  readiness?: () => Record<string, boolean>;
}

/** The request as logged: method, URL with grant tokens masked, and the caller's address. */
export function serializeRequest(req: { method?: string; url?: string; ip?: string; id?: string }) {
  return { method: req.method, url: req.url?.replace(/\/v1\/grants\/[^/?#]+/, '/v1/grants/[redacted]'), remoteAddress: req.ip, id: req.id };
}

/**
 * The request id (contract §4): the caller's `X-Request-Id` when it is 1–128 characters of
 * [A-Za-z0-9._:-], else a new UUID. Fastify puts it on every log line of the request (`reqId`); the
 * reply echoes it in `X-Request-Id` and error bodies carry it as `requestId`.
 */
function requestId(req: { headers: Record<string, string | string[] | undefined> }): string {
  const sent = req.headers['x-request-id'];
  return typeof sent === 'string' && idPattern.test(sent) ? sent : randomUUID();
}

const validation = (issues: Issue[]) => new HttpError(400, 'VALIDATION_FAILED', 'The request is not valid.', { issues });

function partnerParam(req: FastifyRequest): string {
  const id = (req.params as { partnerId?: string }).partnerId ?? '';
  if (!idPattern.test(id)) throw validation([{ path: 'partnerId', message: 'must be 1–128 characters of [A-Za-z0-9._:-]' }]);
  return id;
}

/** How long `/readyz` waits for each ping (they run at once), so it answers within 2 s. */
const READY_PING_MS = 1500;

/** The check's answer, or false when it fails or has not answered within `ms`. */
function within(ms: number, check: Promise<boolean>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  return Promise.race([check.catch(() => false), late]).finally(() => clearTimeout(timer));
}

/** The HTTP API of contract §3–§7 (commands, reads, grant links, health). */
export async function buildServer(ctx: AppContext, opts: ServerOptions): Promise<FastifyInstance> {
  const app: FastifyInstance = Fastify({
    // Grant tokens are credentials: request lines never carry them.
    loggerInstance: ctx.logger.child({ role: 'api' }, { serializers: { req: serializeRequest } }) as FastifyBaseLogger,
    bodyLimit: ctx.config.bodyLimitBytes,
    logController: new LogController({ disableRequestLogging: ctx.config.logLevel !== 'debug' && ctx.config.logLevel !== 'trace' }),
    routerOptions: { maxParamLength: 300 },
    genReqId: requestId,
  });
  const { registry } = opts;
  // First hook of all, so every reply (401 from auth, 404, 413, 415, 429 included) carries the id.
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  // Per request: one metric and one info line (with the request id) naming the route's pattern, never
  // the URL (grant links carry tokens) nor any header. Probes and scrapes log at debug only. (At
  // debug, Fastify's own incoming/completed lines come too, with the URL, grant tokens masked.)
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    ctx.metrics.recordHttp(route, req.method, reply.statusCode, reply.elapsedTime / 1000);
    const probe = route === '/healthz' || route === '/readyz' || route === '/metrics';
    req.log[probe ? 'debug' : 'info']({ method: req.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10 }, 'request');
  });
  // Concurrent requests share a transaction and an addBulk (group commit); each still gets its own reply.
  const intake = commandIntake(ctx.orm, ctx.queues);

  // Commands are JSON only: anything else is 415 (the text/plain default parser is removed). The
  // grant page's form parser lives in the grant routes' own scope, so a form body is 415 elsewhere.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, req, reply) => {
    const known = errorReply(err);
    if (known) return reply.code(known.status).send(known.body);
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: { code: 'PAYLOAD_TOO_LARGE', message: `The body is larger than ${ctx.config.bodyLimitBytes} bytes.` } });
    }
    if (err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY' || err.code === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' || err instanceof SyntaxError) {
      return reply.code(400).send({ error: { code: 'VALIDATION_FAILED', message: 'The body is not valid JSON.', issues: [{ path: '', message: err.message }] } });
    }
    if (err.statusCode === 429) {
      return reply.code(429).send({ error: (err as unknown as { error?: unknown }).error ?? { code: 'RATE_LIMITED', message: err.message } });
    }
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply.code(415).send({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'Send the body as application/json.' } });
    }
    if (isDatabaseUnavailable(err)) {
      return reply.code(503).send({ error: { code: 'SERVICE_UNAVAILABLE', message: 'The database is unreachable. Try again.' } });
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: { code: 'VALIDATION_FAILED', message: err.message, issues: [] } });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: { code: 'INTERNAL_ERROR', message: 'Something went wrong on our side.' } });
  });
  if (ctx.config.rateLimitPerMinute > 0) {
    // Per token (by the hash of its bearer value; anonymous callers by address): 429 with Retry-After.
    await app.register(rateLimit, {
      max: ctx.config.rateLimitPerMinute,
      timeWindow: 60_000,
      keyGenerator: (req) => {
        const auth = req.headers.authorization;
        return auth ? `t:${createHash('sha256').update(auth).digest('base64url').slice(0, 22)}` : `ip:${req.ip}`;
      },
      errorResponseBuilder: (_req, c) => ({ statusCode: 429, error: { code: 'RATE_LIMITED', message: `Too many requests: at most ${c.max} a minute per token. Retry after ${c.after}.` } }),
    });
  }
  await app.register(swagger, { mode: 'static', specification: { document: openApiDocument() as never } });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => openApiDocument());

  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'No such route.' } }));
  // Every error body carries the request id (contract §4), whichever handler, hook or plugin wrote it.
  app.addHook('preSerialization', async (req, reply, payload: unknown) => {
    const error = reply.statusCode >= 400 ? (payload as { error?: unknown } | null)?.error : undefined;
    return error !== null && typeof error === 'object' && !Array.isArray(error) ? { ...(payload as object), error: { ...error, requestId: req.id } } : payload;
  });

  // Authenticate before the body is parsed: without a valid token the answer is 401, whatever the body.
  app.addHook('onRequest', async (req) => {
    const path = req.url;
    if (path.startsWith('/v1/partners/') || path.startsWith('/v1/commands/')) authenticate(registry, req);
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    // Bounded: a stalled Redis or Postgres reads as not ready within READY_PING_MS, not when it wakes up.
    const [postgres, redis] = await Promise.all([
      within(READY_PING_MS, pingDatabase(ctx.orm.em.fork())),
      within(READY_PING_MS, ctx.queues.connection.ping().then((r) => r === 'PONG')),
    ]);
    const checks: Record<string, boolean> = { postgres, redis };
    Object.assign(checks, opts.readiness?.() ?? {});
    const ok = Object.values(checks).every(Boolean);
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', checks });
  });

  /** Validates one body; the Idempotency-Key header, when present, is the commandId. */
  const readCommand = (raw: unknown, prefix: (string | number)[], idemKey?: string): Command => {
    const r = parseCommand(raw, prefix);
    if (!r.ok) throw validation(r.issues);
    if (idemKey !== undefined) {
      if (!idPattern.test(idemKey)) throw validation([{ path: 'Idempotency-Key', message: 'must be 1–128 characters of [A-Za-z0-9._:-]' }]);
      if (r.command.commandId !== undefined && r.command.commandId !== idemKey) throw validation([{ path: 'commandId', message: 'differs from the Idempotency-Key header' }]);
      return { ...r.command, commandId: idemKey };
    }
    return r.command;
  };

  app.post('/v1/partners/:partnerId/commands', async (req, reply) => {
    const partnerId = partnerParam(req);
    const token = authorize(registry, req, postingScopes, partnerId);
    authorizeCommands(token, [req.body], { batch: false });
    const idem = req.headers['idempotency-key'];
    const command = readCommand(req.body, [], typeof idem === 'string' ? idem : undefined);
    const [accepted] = await intake.submit({ partnerId, tokenName: token.name, commands: [command] });
    const { created, ...body } = accepted!;
    if (created) ctx.metrics.accepted.inc({ type: body.type });
    if (!created) reply.header('idempotent-replayed', 'true');
    return reply.code(created ? 202 : 200).send(body);
  });

  app.post('/v1/partners/:partnerId/commands::batch', async (req, reply) => {
    const partnerId = partnerParam(req);
    const token = authorize(registry, req, postingScopes, partnerId);
    const parsed = batchSchema.safeParse(req.body);
    if (!parsed.success) throw validation(toIssues(parsed.error));
    authorizeCommands(token, parsed.data.commands, { batch: true });
    const batch = parseCommands(parsed.data.commands);
    if (!batch.ok) throw validation(batch.issues);
    const { commands } = batch;
    const accepted = await intake.submit({ partnerId, tokenName: token.name, commands, batch: true });
    const anyCreated = accepted.some((a) => a.created);
    for (const a of accepted) if (a.created) ctx.metrics.accepted.inc({ type: a.type });
    if (!anyCreated) reply.header('idempotent-replayed', 'true');
    return reply.code(anyCreated ? 202 : 200).send({ commands: accepted.map(({ created: _c, ...a }) => a) });
  });

  app.get<{ Params: { commandId: string } }>('/v1/commands/:commandId', async (req) => {
    const token = authorize(registry, req, 'read');
    const status = await getCommandStatus(ctx.orm.em.fork(), req.params.commandId);
    // Another partner's command reads as unknown: its existence is not revealed.
    if (!status || !canActOn(token, status.partnerId)) {
      throw new HttpError(404, 'NOT_FOUND', 'No such command.');
    }
    return status;
  });

  /**
   * Partner-scoped reads: scope, then partner access, then existence. `reader` says whether the
   * token may see who the partner's employees are (`employees:read`, contract §3).
   */
  const partnerRead = async (req: FastifyRequest, scope: 'read' | 'employees:read') => {
    const partnerId = partnerParam(req);
    const token = authorize(registry, req, scope, partnerId);
    const em = ctx.orm.em.fork();
    if (!(await partnerExists(em, partnerId))) throw new HttpError(404, 'NOT_FOUND', 'No such partner.');
    return { partnerId, em, reader: { canSeeEmployees: hasScope(token, 'employees:read') } };
  };

  app.get('/v1/partners/:partnerId/employees', async (req) => {
    const { partnerId, em } = await partnerRead(req, 'employees:read');
    return listEmployees(em, partnerId);
  });
  app.get('/v1/partners/:partnerId/clients', async (req) => {
    const { partnerId, em, reader } = await partnerRead(req, 'read');
    return listClients(em, partnerId, reader);
  });
  app.get<{ Params: { hubId: string } }>('/v1/partners/:partnerId/clients/:hubId', async (req) => {
    const { partnerId, em, reader } = await partnerRead(req, 'read');
    const client = await getClient(em, partnerId, req.params.hubId, reader);
    if (!client) throw new HttpError(404, 'NOT_FOUND', 'No such client in this partner\'s list.');
    return client;
  });
  app.get('/v1/partners/:partnerId/conflicts', async (req) => {
    const { partnerId, em } = await partnerRead(req, 'employees:read');
    return listConflicts(em, partnerId);
  });
  app.get<{ Querystring: Record<string, unknown> }>('/v1/partners/:partnerId/requests', async (req) => {
    const { partnerId, em } = await partnerRead(req, 'employees:read');
    const q = parseRequestsQuery(req.query);
    if (!q.ok) throw validation(q.issues);
    return listRequests(em, partnerId, q.query);
  });
  app.get('/v1/partners/:partnerId/renewals', async (req) => {
    const { partnerId, em } = await partnerRead(req, 'read');
    return listRenewals(em, partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
  });

  app.get('/v1/partners/:partnerId/dashboard', async (req) => {
    const { partnerId, em } = await partnerRead(req, 'read');
    return getDashboard(em, partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
  });

  app.get<{ Querystring: { from?: string; to?: string } }>('/v1/partners/:partnerId/credit', async (req) => {
    const { partnerId, em } = await partnerRead(req, 'read');
    const month = /^\d{4}-(0[1-9]|1[0-2])$/;
    const to = req.query.to ?? monthOf(ctx.now());
    const from = req.query.from ?? addMonths(to, -11);
    const issues: Issue[] = [];
    if (!month.test(from)) issues.push({ path: 'from', message: 'must be YYYY-MM' });
    if (!month.test(to)) issues.push({ path: 'to', message: 'must be YYYY-MM' });
    if (!issues.length && from > to) issues.push({ path: 'from', message: 'must not be after to' });
    if (!issues.length && monthRange(from, to).length > 240) issues.push({ path: 'from', message: 'the range may span at most 240 months' });
    if (issues.length) throw validation(issues);
    return creditReport(em, partnerId, { from, to });
  });

  app.get('/metrics', async (_req, reply) => {
    reply.type(ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });

  await app.register(async (grants) => {
    // A form post from the grant page carries no data we need.
    grants.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, _body, done) => done(null, {}));
    registerGrantRoutes(grants, ctx);
  });
  await registerQueueDashboard(app, ctx, registry);
  registerAuditRoutes(app, ctx, registry);
  await registerWebApp(app, ctx, registry);
  return app;
}
