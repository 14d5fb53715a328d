import { randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AppContext } from '../../context.js';
import { idPattern, toIssues, type Issue } from '../../commands/schemas.js';
import { partnerExists } from '../../db/read-store.js';
import { createWebhook, endWebhook, findWebhook, listDeliveries, listWebhooks, redeliver } from '../../db/webhook-store.js';
import { enqueueWebhookDeliveries } from '../../jobs/enqueue.js';
import { WEBHOOK_EVENT_TYPES } from '../../webhooks/events.js';
import { sealWebhookSecret } from '../../webhooks/secret-box.js';
import { newWebhookSecret } from '../../webhooks/sender.js';
import { MAX_WEBHOOK_URL_LENGTH, webhookUrlProblems } from '../../webhooks/target.js';
import { HttpError } from '../errors.js';
import { authorize, type TokenRegistry } from './auth.js';
import { pageOf, parsePage } from './pagination.js';

/**
 * Webhook subscriptions and their delivery log (contract §8), scope `webhooks:write` (or `admin`)
 * on the partner:
 *
 * - `POST /v1/partners/{partnerId}/webhooks` `{url, events, description?}` → 201 with the secret (once)
 * - `GET /v1/partners/{partnerId}/webhooks` → the live subscriptions (no secrets)
 * - `DELETE /v1/partners/{partnerId}/webhooks/{webhookId}` → 204 (its pending deliveries are dropped)
 * - `GET /v1/partners/{partnerId}/webhooks/{webhookId}/deliveries` → the delivery log, newest first
 * - `POST /v1/partners/{partnerId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver` → 202
 *
 * Another partner's webhook (or delivery) reads as unknown: 404. A refused request stores nothing.
 * The zod schemas below are the routes' shapes, for the OpenAPI document ({@link webhookRouteSchemas}).
 */

/** Live subscriptions a partner may have at once. */
export const MAX_WEBHOOKS_PER_PARTNER = 25;

const instant = z.string().describe('An ISO-8601 instant (UTC)');

/** An event a partner can subscribe to. */
export const WebhookEventName = z.enum(WEBHOOK_EVENT_TYPES).describe('An event type (contract §8)');

/** The body of `POST …/webhooks`. */
export const CreateWebhookBody = z.object({
  url: z.string().min(1).max(MAX_WEBHOOK_URL_LENGTH).describe('http or https, no credentials; not a loopback, private or link-local address unless WEBHOOK_ALLOW_PRIVATE=true'),
  events: z.array(WebhookEventName).min(1).max(50).describe('The events to receive (duplicates are ignored)'),
  description: z.string().max(500).refine((s) => !s.includes('\u0000') && s.isWellFormed(), 'must be text Postgres can store').optional(),
}).strict();

/** A subscription as listed (never its secret). */
export const WebhookSummary = z.object({
  id: z.string(),
  url: z.string(),
  events: z.array(WebhookEventName),
  description: z.string().nullable(),
  createdAt: instant,
});

/** The answer to `POST …/webhooks`: the subscription and its signing secret, shown this once. */
export const WebhookCreated = WebhookSummary.extend({
  secret: z.string().describe('whsec_ + base64 of 32 random bytes: the Standard Webhooks signing key; shown once'),
});

/** `GET …/webhooks`. */
export const WebhookList = z.object({ webhooks: z.array(WebhookSummary), nextCursor: z.string().nullable() });

/** One delivery of the log. */
export const DeliveryEntry = z.object({
  id: z.string().describe('The delivery id (for redeliver)'),
  eventId: z.string().describe('The event id: the webhook-id header of every attempt'),
  eventType: WebhookEventName,
  state: z.enum(['pending', 'delivered', 'failed', 'dropped']).describe('pending (to send or retry), delivered (2xx), failed (given up after 24 h), dropped (the subscription ended)'),
  attempts: z.number().int(),
  lastStatus: z.number().int().nullable().describe('HTTP status of the last attempt; null: none yet, or no answer'),
  lastError: z.string().nullable(),
  lastAttemptAt: instant.nullable(),
  nextRetryAt: instant.nullable().describe('When a pending delivery is tried next'),
  createdAt: instant,
  deliveredAt: instant.nullable(),
});

/** `GET …/webhooks/{webhookId}/deliveries`. */
export const DeliveryList = z.object({ deliveries: z.array(DeliveryEntry), nextCursor: z.string().nullable() });

/** `POST …/deliveries/{deliveryId}/redeliver`. */
export const RedeliverAccepted = z.object({ deliveryId: z.string(), state: z.literal('pending') });

const PartnerParams = z.object({ partnerId: z.string().regex(idPattern) });
const WebhookParams = PartnerParams.extend({ webhookId: z.string().max(100) });
const DeliveryParams = WebhookParams.extend({ deliveryId: z.string().max(30) });
const PageQuery = z.object({ limit: z.coerce.number().int().min(1).max(1000).optional(), cursor: z.string().max(2000).optional() });

/** The shapes of every webhook route, by method and URL pattern, for the OpenAPI document. */
export const webhookRouteSchemas = {
  'POST /v1/partners/:partnerId/webhooks': { params: PartnerParams, body: CreateWebhookBody, response: { 201: WebhookCreated }, summary: 'Subscribe to events (the secret is shown once)' },
  'GET /v1/partners/:partnerId/webhooks': { params: PartnerParams, querystring: PageQuery, response: { 200: WebhookList }, summary: 'The partner\'s live webhook subscriptions' },
  'DELETE /v1/partners/:partnerId/webhooks/:webhookId': { params: WebhookParams, response: { 204: z.null() }, summary: 'End a subscription (its pending deliveries are dropped)' },
  'GET /v1/partners/:partnerId/webhooks/:webhookId/deliveries': { params: WebhookParams, querystring: PageQuery, response: { 200: DeliveryList }, summary: 'The delivery log, newest first' },
  'POST /v1/partners/:partnerId/webhooks/:webhookId/deliveries/:deliveryId/redeliver': { params: DeliveryParams, response: { 202: RedeliverAccepted }, summary: 'Send a delivery again (same webhook-id)' },
} as const;

const validation = (issues: Issue[]) => new HttpError(400, 'VALIDATION_FAILED', 'The request is not valid.', { issues });
const notFound = (what: string) => new HttpError(404, 'NOT_FOUND', `No such ${what}.`);

/** The path's partner, checked, and the token's right to manage its webhooks. */
function partnerOf(req: FastifyRequest, registry: TokenRegistry): string {
  const id = (req.params as { partnerId?: string }).partnerId ?? '';
  if (!idPattern.test(id)) throw validation([{ path: 'partnerId', message: 'must be 1–128 characters of [A-Za-z0-9._:-]' }]);
  authorize(registry, req, 'webhooks:write', id);
  return id;
}

/** Registers the webhook routes on the API. */
export function registerWebhookRoutes(app: FastifyInstance, ctx: AppContext, registry: TokenRegistry): void {
  const existing = async (partnerId: string) => {
    const em = ctx.orm.em.fork();
    if (!(await partnerExists(em, partnerId))) throw notFound('partner');
    return em;
  };

  app.post('/v1/partners/:partnerId/webhooks', async (req, reply) => {
    const partnerId = partnerOf(req, registry);
    const parsed = CreateWebhookBody.safeParse(req.body);
    const issues: Issue[] = parsed.success ? [] : toIssues(parsed.error);
    const rawUrl = (req.body as { url?: unknown } | null)?.url;
    if (typeof rawUrl === 'string' && rawUrl.length <= MAX_WEBHOOK_URL_LENGTH) {
      for (const message of webhookUrlProblems(rawUrl, { allowPrivate: ctx.config.webhookAllowPrivate })) issues.push({ path: 'url', message });
    }
    if (!parsed.success || issues.length) throw validation(issues);
    const body = parsed.data;
    const em = await existing(partnerId);
    const secret = newWebhookSecret();
    const id = `wh_${randomBytes(12).toString('hex')}`;
    const created = await createWebhook(em, {
      id,
      partnerId,
      url: body.url,
      events: [...new Set(body.events)],
      description: body.description ?? null,
      storedSecret: sealWebhookSecret(ctx.config.webhookSecretKeys, id, secret),
      maxLive: MAX_WEBHOOKS_PER_PARTNER,
    });
    if (!created) throw validation([{ path: '', message: `a partner has at most ${MAX_WEBHOOKS_PER_PARTNER} webhooks; delete one first` }]);
    // Neither the secret nor the URL (receivers often put a token in it) is logged.
    req.log.info({ partnerId, webhookId: created.id, events: created.events }, 'webhook subscribed');
    return reply.code(201).send({ ...created, secret });
  });

  app.get('/v1/partners/:partnerId/webhooks', async (req) => {
    const partnerId = partnerOf(req, registry);
    const p = parsePage(req.query, 2, ([at]) => !Number.isNaN(Date.parse(at ?? '')));
    if (!p.ok) throw validation(p.issues);
    const em = await existing(partnerId);
    const after = p.page.after ? { createdAt: p.page.after[0]!, id: p.page.after[1]! } : null;
    const found = await listWebhooks(em, partnerId, { limit: p.page.limit + 1, after });
    const { items, nextCursor } = pageOf(found, p.page.limit, (w) => [w.createdAt, w.id]);
    return { webhooks: items, nextCursor };
  });

  app.delete<{ Params: { webhookId: string } }>('/v1/partners/:partnerId/webhooks/:webhookId', async (req, reply) => {
    const partnerId = partnerOf(req, registry);
    const em = await existing(partnerId);
    if (!(await endWebhook(em, req.params.webhookId, 'deleted', partnerId))) throw notFound('webhook');
    req.log.info({ partnerId, webhookId: req.params.webhookId }, 'webhook deleted');
    return reply.code(204).send();
  });

  app.get<{ Params: { webhookId: string } }>('/v1/partners/:partnerId/webhooks/:webhookId/deliveries', async (req) => {
    const partnerId = partnerOf(req, registry);
    const p = parsePage(req.query, 1, ([id]) => /^\d{1,18}$/.test(id ?? ''));
    if (!p.ok) throw validation(p.issues);
    const em = await existing(partnerId);
    if (!(await findWebhook(em, partnerId, req.params.webhookId))) throw notFound('webhook');
    const found = await listDeliveries(em, req.params.webhookId, { limit: p.page.limit + 1, before: p.page.after?.[0] ?? null });
    const { items, nextCursor } = pageOf(found, p.page.limit, (d) => [d.id]);
    return { deliveries: items, nextCursor };
  });

  app.post<{ Params: { webhookId: string; deliveryId: string } }>('/v1/partners/:partnerId/webhooks/:webhookId/deliveries/:deliveryId/redeliver', async (req, reply) => {
    const partnerId = partnerOf(req, registry);
    const em = await existing(partnerId);
    const { webhookId, deliveryId } = req.params;
    const d = await redeliver(em, { partnerId, webhookId, deliveryId });
    if (!d) throw notFound('delivery of a live webhook');
    // Postgres has it pending now: if Redis does not take the job, the reconciler adds it.
    await enqueueWebhookDeliveries(ctx.queues, [webhookId], { promote: true }).catch((err: unknown) => req.log.warn({ err, webhookId }, 'webhook job not added; the reconciler will'));
    return reply.code(202).send({ deliveryId: d.id, state: 'pending' as const });
  });
}
