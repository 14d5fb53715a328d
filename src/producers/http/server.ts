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
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { bearer, documentRoute, errors, handlerChecked, json, serializerCompiler, swaggerOptions, validatorCompiler, type ApiTypeProvider } from './openapi.js';
import {
  Accepted, AcceptedBatch, BatchBody, ClientDetail, ClientList, ClientParams, CommandBody, CommandHeaders, CommandParams, CommandStatus, ConflictList, CreditQuery, CreditReport,
  Dashboard, EmployeeList, Health, PageQuery, PartnerParams, PreviewBody, PreviewResult, previewTypes, Readiness, RenewalList, RequestList, RequestsQuery, StatusQuery,
} from './api-schemas.js';
import { parsePage } from './pagination.js';
import { sharedRateLimitStore } from './rate-limit.js';
import { previewPairCommand, type PreviewCommand } from '../../commands/preview.js';
import { SettledListener } from '../../jobs/command-events.js';
import type { z } from 'zod';
import { registerGrantRoutes } from './grants.js';
import { requestLoggerFactory } from './request-logger.js';
import { registerQueueDashboard } from './dashboard.js';
import { registerAuditRoutes } from './audit.js';
import { registerWebhookRoutes } from './webhooks.js';
import { registerWebApp } from './app/index.js';
import { getClient, getDashboard, isConflictCursor, listClients, listConflicts, listEmployees, partnerExists } from './reads.js';
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

/** Health, readiness and metrics: never rate limited. */
const probes: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

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
    // `req.log` made on first use: see request-logger.ts.
    childLoggerFactory: requestLoggerFactory,
  });
  const { registry } = opts;
  // Route schemas are zod (fastify-type-provider-zod): they write the OpenAPI document, type the
  // replies, and check them on the way out; handlers check the requests themselves (openapi.ts).
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler(app.log));
  app.addHook('onRoute', documentRoute);
  const api = app.withTypeProvider<ApiTypeProvider>();
  // First hook of all, so every reply (401 from auth, 404, 413, 415, 429 included) carries the id.
  // Hooks on every request take a callback, not a promise: no promise and microtask per request.
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    done();
  });
  // Per request: one metric and one info line (with the request id) naming the route's pattern, never
  // the URL (grant links carry tokens) nor any header. Probes and scrapes log at debug only. (At
  // debug, Fastify's own incoming/completed lines come too, with the URL, grant tokens masked.)
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const elapsed = reply.elapsedTime;
    ctx.metrics.recordHttp(route, req.method, reply.statusCode, elapsed / 1000);
    const probe = route === '/healthz' || route === '/readyz' || route === '/metrics';
    req.log[probe ? 'debug' : 'info']({ method: req.method, route, status: reply.statusCode, ms: Math.round(elapsed * 10) / 10 }, 'request');
    done();
  });
  // Concurrent requests share an insert and an addBulk (group commit); each still gets its own reply.
  const intake = commandIntake(ctx.orm, ctx.queues);
  // Once the last request is answered: the confirmations it left are written before the pool closes.
  app.addHook('onClose', async () => intake.flushed());

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
    if (hasZodFastifySchemaValidationErrors(err)) {
      // A route that lets Fastify check a request part with its zod schema: the contract's 400.
      const where = (err as { validationContext?: string }).validationContext;
      const issues = err.validation.map((v) => ({ path: [...(where && where !== 'body' ? [where] : []), ...v.instancePath.split('/').filter(Boolean)].join('.'), message: v.message ?? 'invalid' }));
      return reply.code(400).send({ error: { code: 'VALIDATION_FAILED', message: 'The request is not valid.', issues } });
    }
    if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: { code: 'VALIDATION_FAILED', message: err.message, issues: [] } });
    }
    req.log.error({ err }, 'unhandled error');
    return reply.code(500).send({ error: { code: 'INTERNAL_ERROR', message: 'Something went wrong on our side.' } });
  });
  if (ctx.config.rateLimitPerMinute > 0) {
    // Per token (by the hash of its bearer value; anonymous callers by address): 429 with Retry-After.
    // Counted in Redis, so all API processes share the limit; probes are never limited, and a
    // request that Redis cannot count now goes through uncounted (rate-limit.ts).
    await app.register(rateLimit, {
      max: ctx.config.rateLimitPerMinute,
      timeWindow: 60_000,
      store: sharedRateLimitStore(ctx.queues),
      skipOnError: true,
      allowList: (req) => probes.has(req.routeOptions.url ?? ''),
      keyGenerator: (req) => {
        const auth = req.headers.authorization;
        return auth ? `t:${createHash('sha256').update(auth).digest('base64url').slice(0, 22)}` : `ip:${req.ip}`;
      },
      errorResponseBuilder: (_req, c) => ({ statusCode: 429, error: { code: 'RATE_LIMITED', message: `Too many requests: at most ${c.max} a minute per token. Retry after ${c.after}.` } }),
    });
  }
  // The OpenAPI document is written from the routes' schemas (openapi.ts); /docs shows it.
  await app.register(swagger, swaggerOptions(ctx.config.publicUrl));
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  app.setNotFoundHandler((_req, reply) => reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'No such route.' } }));
  // Every error body carries the request id (contract §4), whichever handler, hook or plugin wrote it.
  app.addHook('preSerialization', (req, reply, payload: unknown, done) => {
    const error = reply.statusCode >= 400 ? (payload as { error?: unknown } | null)?.error : undefined;
    done(null, error !== null && typeof error === 'object' && !Array.isArray(error) ? { ...(payload as object), error: { ...error, requestId: req.id } } : payload);
  });

  // Authenticate before the body is parsed: without a valid token the answer is 401, whatever the body.
  app.addHook('onRequest', (req, _reply, done) => {
    const path = req.url;
    if (path.startsWith('/v1/partners/') || path.startsWith('/v1/commands/')) authenticate(registry, req);
    done();
  });

  const publicOp = { tags: ['operations'], security: [] as Record<string, string[]>[] };
  api.get('/healthz', { schema: { operationId: 'getHealth', summary: 'Liveness (no auth)', ...publicOp, response: { 200: json(Health, 'The process is alive') } } }, async () => ({ status: 'ok' as const }));
  api.get('/readyz', {
    schema: {
      operationId: 'getReadiness', summary: 'Readiness: Postgres, Redis and (with the worker role) the workers, each within 1.5 s', ...publicOp,
      response: { 200: json(Readiness, 'Ready'), 503: json(Readiness, 'Not ready: `checks` says what failed') },
    },
  }, async (_req, reply) => {
    // Bounded: a stalled Redis or Postgres reads as not ready within READY_PING_MS, not when it wakes up.
    const [postgres, redis] = await Promise.all([
      within(READY_PING_MS, pingDatabase(ctx.orm.em.fork())),
      within(READY_PING_MS, ctx.queues.connection.ping().then((r) => r === 'PONG')),
    ]);
    const checks: Record<string, boolean> = { postgres, redis };
    Object.assign(checks, opts.readiness?.() ?? {});
    const ok = Object.values(checks).every(Boolean);
    return ok ? reply.code(200).send({ status: 'ready', checks }) : reply.code(503).send({ status: 'not ready', checks });
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

  const commandErrors = errors(400, 401, 403, 404, 409, 413, 415, 429, 503);
  api.post('/v1/partners/:partnerId/commands', {
    schema: {
      operationId: 'postCommand', tags: ['commands'], summary: 'Post one command',
      description: 'Written to the command log and applied by a worker, exactly once in effect. The same commandId (or Idempotency-Key) with the same body again: 200 with the command\'s current status and `Idempotent-Replayed: true`; with another body: 409.',
      security: bearer('commands:write', 'clients:sync'),
      ...handlerChecked({ params: PartnerParams, headers: CommandHeaders, body: CommandBody }),
      response: { 202: json(Accepted, 'Accepted: in the command log, its job queued'), 200: json(Accepted, 'A replay: the commandId is known with the same body'), ...commandErrors },
    },
  }, async (req, reply) => {
    const partnerId = partnerParam(req);
    const token = authorize(registry, req, postingScopes, partnerId);
    authorizeCommands(token, [req.body], { batch: false });
    const idem = req.headers['idempotency-key'];
    const command = readCommand(req.body, [], typeof idem === 'string' ? idem : undefined);
    const [accepted] = await intake.submit({ partnerId, tokenName: token.name, commands: [command] });
    const { created, ...body } = accepted!;
    if (created) ctx.metrics.accepted.inc({ type: body.type });
    if (created) return reply.code(202).send(body);
    return reply.code(200).header('idempotent-replayed', 'true').send(body);
  });

  api.post('/v1/partners/:partnerId/commands::batch', {
    schema: {
      operationId: 'postCommandBatch', tags: ['commands'], summary: 'Post up to 1000 commands, all or nothing',
      description: 'A batch with any invalid or refused command is rejected whole. When every command is a replay: 200 and `Idempotent-Replayed: true`.',
      security: bearer('commands:write', 'clients:sync'),
      ...handlerChecked({ params: PartnerParams, body: BatchBody }),
      response: { 202: json(AcceptedBatch, 'Accepted'), 200: json(AcceptedBatch, 'Every command was a replay'), ...commandErrors },
    },
  }, async (req, reply) => {
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
    const body = { commands: accepted.map(({ created: _c, ...a }) => a) };
    if (anyCreated) return reply.code(202).send(body);
    return reply.code(200).header('idempotent-replayed', 'true').send(body);
  });

  api.post('/v1/partners/:partnerId/commands::preview', {
    schema: {
      operationId: 'previewCommand', tags: ['commands'], summary: 'Dry run: what one access.assign, access.revoke or access.resend would do now, pair by pair',
      description: 'Decided by the worker\'s own rules on the current state, in a read-only transaction: nothing is written, queued or emailed. Other command types: 400.',
      security: bearer('commands:write'),
      ...handlerChecked({ params: PartnerParams, body: PreviewBody }),
      response: { 200: json(PreviewResult, 'The outcome (or error) of each pair'), ...errors(400, 401, 403, 404, 413, 415, 429, 503) },
    },
  }, async (req) => {
    const partnerId = partnerParam(req);
    const token = authorize(registry, req, 'commands:write', partnerId);
    authorizeCommands(token, [req.body], { batch: false });
    const raw = req.body;
    const type = raw !== null && typeof raw === 'object' && Object.hasOwn(raw, 'type') ? (raw as { type: unknown }).type : undefined;
    if (!(previewTypes as readonly unknown[]).includes(type)) throw validation([{ path: 'type', message: `must be one of ${previewTypes.join(', ')} (a dry run decides pair commands)` }]);
    const command = readCommand(raw, []) as PreviewCommand;
    const answer = await previewPairCommand(ctx.orm.em, partnerId, command, ctx.now());
    if (!answer) throw new HttpError(404, 'NOT_FOUND', 'No such partner.');
    return answer;
  });

  // `?wait=N`: answers as soon as the command settles, woken by the workers' message (no polling).
  const settled = new SettledListener(ctx.queues);
  app.addHook('preClose', async () => settled.close());
  api.get('/v1/commands/:commandId', {
    schema: {
      operationId: 'getCommand', tags: ['commands'], summary: 'A command\'s status from the command log',
      description: 'With `wait=N` (seconds, at most 30): answered as soon as the command is completed or failed, or after N seconds with its current status.',
      security: bearer('read'),
      ...handlerChecked({ params: CommandParams, querystring: StatusQuery }),
      response: { 200: json(CommandStatus, 'The command\'s status'), ...errors(400, 401, 403, 404, 429) },
    },
  }, async (req, reply) => {
    const token = authorize(registry, req, 'read');
    const { commandId } = req.params as { commandId: string };
    const q = StatusQuery.safeParse(req.query);
    if (!q.success) throw validation(toIssues(q.error));
    const read = async () => {
      const status = await getCommandStatus(ctx.orm.em.fork(), commandId);
      // Another partner's command reads as unknown: its existence is not revealed.
      if (!status || !canActOn(token, status.partnerId)) throw new HttpError(404, 'NOT_FOUND', 'No such command.');
      return status;
    };
    const waitMs = (q.data.wait ?? 0) * 1000;
    if (waitMs <= 0) return read();
    // Listening before the first read: a command that settles in between still wakes this request.
    const wait = await settled.listen(commandId).catch((err: unknown) => {
      req.log.warn({ err }, 'no subscription to settled commands: waiting out the timeout');
      return null;
    });
    try {
      const first = await read();
      if (first.state === 'completed' || first.state === 'failed') return first;
      let timer: NodeJS.Timeout | undefined;
      let gone: (() => void) | undefined;
      await new Promise<void>((resolve) => {
        timer = setTimeout(resolve, waitMs);
        gone = resolve;
        reply.raw.once('close', gone); // the caller left
        void wait?.settled.then(resolve);
      }).finally(() => {
        clearTimeout(timer);
        if (gone) reply.raw.off('close', gone);
      });
      return await read();
    } finally {
      wait?.stop();
    }
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

  /** The schema of a partner read: its operation, scope, request parts and answer. */
  const readSchema = <T extends z.ZodType>(operationId: string, summary: string, scope: 'read' | 'employees:read', answer: T, parts: { params?: z.ZodType; querystring?: z.ZodType } = {}) => ({
    schema: {
      operationId, tags: ['reads'], summary, security: bearer(scope),
      ...handlerChecked({ params: parts.params ?? PartnerParams, ...(parts.querystring ? { querystring: parts.querystring } : {}) }),
      response: { 200: json(answer, 'OK'), ...errors(400, 401, 403, 404, 429) },
    },
  });
  /** The page a list's query asks for (`limit`, `cursor`: 400 when invalid). */
  const pageFrom = (query: unknown, arity = 1, valid?: (key: string[]) => boolean) => {
    const r = parsePage(query, arity, valid);
    if (!r.ok) throw validation(r.issues);
    return r.page;
  };

  api.get('/v1/partners/:partnerId/employees', readSchema('listEmployees', 'The partner\'s employees by email, with their accesses', 'employees:read', EmployeeList, { querystring: PageQuery }), async (req) => {
    const { partnerId, em } = await partnerRead(req, 'employees:read');
    return listEmployees(em, partnerId, pageFrom(req.query));
  });
  api.get('/v1/partners/:partnerId/clients', readSchema('listClients', 'The client list by hubId, with access states (employees:read) or their count', 'read', ClientList, { querystring: PageQuery }), async (req) => {
    const { partnerId, em, reader } = await partnerRead(req, 'read');
    return listClients(em, partnerId, reader, pageFrom(req.query));
  });
  api.get('/v1/partners/:partnerId/clients/:hubId', readSchema('getClient', 'One client with its client info, renewals, portal usage and engagement', 'read', ClientDetail, { params: ClientParams }), async (req) => {
    const { partnerId, em, reader } = await partnerRead(req, 'read');
    const client = await getClient(em, partnerId, (req.params as { hubId: string }).hubId, reader);
    if (!client) throw new HttpError(404, 'NOT_FOUND', 'No such client in this partner\'s list.');
    return client;
  });
  api.get('/v1/partners/:partnerId/conflicts', readSchema('listConflicts', 'Duplicate-email conflicts this partner ran into, newest first', 'employees:read', ConflictList, { querystring: PageQuery }), async (req) => {
    const { partnerId, em } = await partnerRead(req, 'employees:read');
    return listConflicts(em, partnerId, pageFrom(req.query, 2, isConflictCursor));
  });
  api.get('/v1/partners/:partnerId/requests', readSchema('listRequests', 'Access requests waiting for a client, oldest first, with their age', 'employees:read', RequestList, { querystring: RequestsQuery }), async (req) => {
    const { partnerId, em } = await partnerRead(req, 'employees:read');
    const q = parseRequestsQuery(req.query as Record<string, unknown>);
    if (!q.ok) throw validation(q.issues);
    return listRequests(em, partnerId, q.query);
  });
  api.get('/v1/partners/:partnerId/renewals', readSchema('listRenewals', 'The clients behind alerts.upcomingRenewals, soonest first', 'read', RenewalList), async (req) => {
    const { partnerId, em } = await partnerRead(req, 'read');
    // renewalOwner is the client info's person, as client.upsert stored it.
    return listRenewals(em, partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays }) as Promise<z.output<typeof RenewalList>>;
  });

  api.get('/v1/partners/:partnerId/dashboard', readSchema('getDashboard', 'Managed MRR, sold tier credit, tier, alerts and team', 'read', Dashboard), async (req) => {
    const { partnerId, em } = await partnerRead(req, 'read');
    return getDashboard(em, partnerId, { now: ctx.now(), renewalAlertDays: ctx.config.renewalAlertDays });
  });

  api.get('/v1/partners/:partnerId/credit', readSchema('getCredit', 'Sold tier credit per month (new, increased, expired, decreased, total)', 'read', CreditReport, { querystring: CreditQuery }), async (req) => {
    const { partnerId, em } = await partnerRead(req, 'read');
    const month = /^\d{4}-(0[1-9]|1[0-2])$/;
    const query = req.query as { from?: string; to?: string };
    const to = query.to ?? monthOf(ctx.now());
    const from = query.from ?? addMonths(to, -11);
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
  registerWebhookRoutes(app, ctx, registry);
  await registerWebApp(app, ctx, registry);
  return app;
}
