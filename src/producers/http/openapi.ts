import type { FastifyBaseLogger, FastifySchemaCompiler, FastifySerializerCompiler, FastifyTypeProvider, RouteOptions } from 'fastify';
import type { SwaggerOptions } from '@fastify/swagger';
import { createJsonSchemaTransform, createJsonSchemaTransformObject, validatorCompiler as zodValidatorCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { apiRegistry, ErrorBody, errorMeanings, named } from './api-schemas.js';
import { DeliveryEntry, DeliveryList, RedeliverAccepted, webhookRouteSchemas, WebhookCreated, WebhookList, WebhookSummary, CreateWebhookBody } from './webhooks.js';

/**
 * The OpenAPI document is written by `@fastify/swagger` from the routes' zod schemas
 * (`fastify-type-provider-zod`): what `server.ts` declares on each route is what `GET /openapi.json`
 * says and what the typed client (`clients/typescript`) is generated from. This module holds the
 * document's frame (info, servers, security schemes, tags), the compilers that make the route
 * schemas work, the documentation of routes that other modules register without zod schemas
 * (grant pages, metrics, the queue dashboard), and a last tidy pass over the document.
 */

/**
 * The type provider of the API's routes: replies are typed by their response schemas (a handler
 * that returns another shape does not compile). Request parts stay `unknown`: the handlers check
 * them themselves (authorization before validation, the contract's issue paths), with the same
 * schemas the document shows.
 */
export interface ApiTypeProvider extends FastifyTypeProvider {
  validator: unknown;
  serializer: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown;
}

/** Request schemas that document what the handler checks itself: Fastify does not validate with them. */
const documentedOnly = new WeakSet<object>();

/** Marks request schemas (params, querystring, headers, body) as checked by the handler, not by Fastify. */
export function handlerChecked<T extends Record<string, unknown>>(parts: T): T {
  for (const v of Object.values(parts)) if (v !== null && typeof v === 'object') documentedOnly.add(v);
  return parts;
}

/**
 * Validation of request parts: none for the schemas marked {@link handlerChecked}; zod for any other
 * route schema (routes of other modules that let Fastify validate), whose failure the error handler
 * answers as the contract's 400 VALIDATION_FAILED with `issues`.
 */
export const validatorCompiler: FastifySchemaCompiler<z.ZodType> = (route) => {
  if (documentedOnly.has(route.schema) || !(route.schema instanceof z.ZodType)) return (data) => ({ value: data });
  return zodValidatorCompiler(route);
};

/**
 * Serialization of JSON replies: the body as the handler built it (never stripped or transformed),
 * checked against the route's response schema; a mismatch is logged (the document would be wrong)
 * but the reply still goes out. Error replies carry details beyond the schema's named fields.
 */
export function serializerCompiler(logger: FastifyBaseLogger): FastifySerializerCompiler<z.ZodType> {
  return ({ schema, method, url, httpStatus }) => {
    if (!(schema instanceof z.ZodType)) return (data) => JSON.stringify(data);
    return (data) => {
      const checked = z.safeEncode(schema, data);
      if (!checked.success) logger.error({ method, route: url, status: httpStatus, issues: checked.error.issues.slice(0, 5) }, 'a reply does not match its documented schema');
      return JSON.stringify(data);
    };
  };
}

/** A JSON response with its description. */
export const json = <T extends z.ZodType>(schema: T, description: string) => ({ description, content: { 'application/json': { schema } } });

/** The contract's error responses for these statuses. */
export function errors<C extends number>(...codes: C[]): Record<C, ReturnType<typeof json<typeof ErrorBody>>> {
  return Object.fromEntries(codes.map((c) => [c, json(ErrorBody, errorMeanings[c] ?? 'Error')])) as Record<C, ReturnType<typeof json<typeof ErrorBody>>>;
}

/** Who may call an operation: a bearer token with one of these scopes (`admin` holds them all). */
export const bearer = (...scopes: string[]) => [{ bearer: scopes }];

const html = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });
const publicOp = { security: [] as Record<string, string[]>[] };

/**
 * The documentation of routes registered without zod schemas by other modules: the grant pages
 * (HTML), the Prometheus scrape and the queue dashboard. Keyed by method and route pattern.
 */
const otherRoutes: Record<string, Record<string, unknown>> = {
  'GET /v1/grants/:token': {
    operationId: 'showGrantPage', tags: ['grants'], summary: 'The confirmation page of a grant link (Grant and Decline), in the client\'s locale', ...publicOp,
    response: { 200: html('The confirmation page'), 404: html('Unknown or tampered link'), 410: html('Already used, expired or withdrawn') },
  },
  'POST /v1/grants/:token': {
    operationId: 'answerGrant', tags: ['grants'], summary: 'Answer the request: decision=grant (the default) or decline', ...publicOp,
    response: { 200: html('Granted or declined'), 400: html('Not an answer the page offers'), 404: html('Unknown or tampered link'), 410: html('Already used, expired or withdrawn') },
  },
  'GET /metrics': {
    operationId: 'getMetrics', tags: ['operations'], summary: 'Prometheus metrics (text exposition format)', ...publicOp,
    response: { 200: { description: 'The Prometheus text exposition', content: { 'text/plain': { schema: z.string() } } } },
  },
  'GET /admin/queues': {
    operationId: 'showQueueDashboard', tags: ['operations'], summary: 'The queue dashboard (Bull Board): HTTP Basic auth, any user name, an admin token as the password',
    security: [{ basic: [] }],
    response: { 200: html('The dashboard'), 401: json(ErrorBody, 'UNAUTHENTICATED: no admin token as the Basic auth password') },
  },
};

// The webhook routes' shapes (webhooks.ts), named in the document.
for (const [schema, id] of [
  [WebhookSummary, 'Webhook'], [WebhookCreated, 'WebhookCreated'], [WebhookList, 'WebhookList'], [CreateWebhookBody, 'CreateWebhook'],
  [DeliveryEntry, 'WebhookDelivery'], [DeliveryList, 'WebhookDeliveryList'], [RedeliverAccepted, 'RedeliverAccepted'],
] as const) if (apiRegistry.get(schema)?.id === undefined) named(id, schema);

const webhookOperationIds: Record<string, string> = {
  'POST /v1/partners/:partnerId/webhooks': 'createWebhook',
  'GET /v1/partners/:partnerId/webhooks': 'listWebhooks',
  'DELETE /v1/partners/:partnerId/webhooks/:webhookId': 'deleteWebhook',
  'GET /v1/partners/:partnerId/webhooks/:webhookId/deliveries': 'listWebhookDeliveries',
  'POST /v1/partners/:partnerId/webhooks/:webhookId/deliveries/:deliveryId/redeliver': 'redeliverWebhookDelivery',
};

/** The documentation of the webhook routes (contract §8), from the shapes webhooks.ts declares; their handlers check the requests. */
function webhookDocs(): Record<string, Record<string, unknown>> {
  return Object.fromEntries(Object.entries(webhookRouteSchemas).map(([key, d]) => {
    const { summary, response, ...parts } = d as unknown as { summary: string; response: Record<string, z.ZodType> } & Record<string, z.ZodType>;
    const responses = Object.fromEntries(Object.entries(response).map(([code, schema]) => [code, code === '204' ? z.null().describe(summary) : json(schema, summary)]));
    return [key, { operationId: webhookOperationIds[key], tags: ['webhooks'], summary, security: bearer('webhooks:write'), ...handlerChecked(parts), response: { ...responses, ...errors(400, 401, 403, 404, 429) } }];
  }));
}

const documented = { ...otherRoutes, ...webhookDocs() };

/**
 * The `onRoute` hook of the document: gives the routes of {@link otherRoutes} and the webhook
 * routes their documentation and hides every other route that has no schema (the web app's pages,
 * the dashboard's assets and API, the documentation's own routes).
 */
export function documentRoute(route: RouteOptions): void {
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  const doc = methods.map((m) => documented[`${m} ${route.url}`]).find((d) => d !== undefined);
  // The queue dashboard declares its own routes hidden: its entry page is documented here all the same.
  if (doc && (!route.schema || Object.keys(route.schema).every((k) => k === 'hide'))) {
    route.schema = doc;
  } else if (!route.schema) {
    route.schema = { hide: true } as RouteOptions['schema'];
  }
}

/** The tags of the document, in the order a reader meets them. */
const tags = [
  { name: 'commands', description: 'Commands to the command log (contract §4), the dry run (§9) and their status' },
  { name: 'reads', description: 'The partner\'s read models (contract §5); lists are paged with `limit` and `cursor`' },
  { name: 'webhooks', description: 'Signed webhooks of what happens (contract §8)' },
  { name: 'grants', description: 'The grant links of access requests, for the client (contract §6)' },
  { name: 'operations', description: 'Health, readiness, metrics, the queue dashboard (contract §7)' },
];

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);
const methodsOf = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head', 'trace'];
const SCHEMA_REF = '#/components/schemas/';

/** Every `$ref` to a schema component in a value. */
function refsIn(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) for (const v of value) refsIn(v, out);
  else if (isObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string' && v.startsWith(SCHEMA_REF)) out.add(v.slice(SCHEMA_REF.length));
      else refsIn(v, out);
    }
  }
  return out;
}

/** Rewrites schema `$ref`s by a name map. */
function renameRefs(value: unknown, names: Map<string, string>): unknown {
  if (Array.isArray(value)) return value.map((v) => renameRefs(v, names));
  if (!isObject(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => {
    if (k === '$ref' && typeof v === 'string' && v.startsWith(SCHEMA_REF)) {
      const name = v.slice(SCHEMA_REF.length);
      return [k, `${SCHEMA_REF}${names.get(name) ?? name}`];
    }
    return [k, renameRefs(v, names)];
  }));
}

/**
 * The last pass over the document:
 * - schema components: only those the operations use; the type provider names a schema's request
 *   (input) form `<id>Input`, which becomes `<id>` when the schema is used as input only;
 * - a discriminator on the command unions (`type`);
 * - every response names its `X-Request-Id` header (429 also `Retry-After`; a 200 replay of a
 *   command `Idempotent-Replayed`);
 * - operations of other modules get an operationId, a tag, and (under /v1/partners) the bearer
 *   scheme with its 401/403 answers, if they did not say.
 */
export function tidyDocument(doc: Json): Json {
  const components = (doc.components ?? {}) as Json;
  const schemas = (components.schemas ?? {}) as Record<string, Json>;
  // A plugin's index route (`prefix/`) is the same page as `prefix`: one path, without the slash.
  const paths: Record<string, Json> = {};
  for (const [path, item] of Object.entries((doc.paths ?? {}) as Record<string, Json>)) {
    const key = path.length > 1 ? path.replace(/\/+$/, '') : path;
    paths[key] = { ...item, ...paths[key] };
  }

  for (const [path, item] of Object.entries(paths)) {
    for (const method of methodsOf) {
      const op = item[method];
      if (!isObject(op)) continue;
      const words = path.split(/[/{}:]+/).filter((w) => w && w !== 'v1');
      op.operationId ??= method + words.map((w) => w[0]!.toUpperCase() + w.slice(1).replace(/[^A-Za-z0-9]/g, '')).join('');
      op.tags ??= [path.includes('/webhooks') ? 'webhooks' : path.startsWith('/v1/') ? 'reads' : 'operations'];
      if (op.security === undefined && path.startsWith('/v1/partners/')) op.security = [{ bearer: [] }];
      const responses = (op.responses ?? {}) as Record<string, Json>;
      if (Array.isArray(op.security) && op.security.some((s) => isObject(s) && 'bearer' in s)) {
        for (const code of ['401', '403']) responses[code] ??= { description: errorMeanings[Number(code)]!, content: { 'application/json': { schema: { $ref: `${SCHEMA_REF}Error` } } } };
      }
      for (const [code, response] of Object.entries(responses)) {
        const headers: Json = { 'X-Request-Id': { $ref: '#/components/headers/RequestId' }, ...(response.headers as Json | undefined) };
        if (code === '429') headers['Retry-After'] = { $ref: '#/components/headers/RetryAfter' };
        if (code === '200' && op.operationId === 'postCommand') headers['Idempotent-Replayed'] = { $ref: '#/components/headers/IdempotentReplayed' };
        if (code === '200' && op.operationId === 'postCommandBatch') headers['Idempotent-Replayed'] = { $ref: '#/components/headers/IdempotentReplayed' };
        response.headers = headers;
      }
      op.responses = responses;
    }
  }
  // The grant page's form (its route takes no JSON, so it has no zod body).
  const answer = paths['/v1/grants/{token}']?.post;
  if (isObject(answer)) {
    answer.requestBody = {
      required: false,
      content: { 'application/x-www-form-urlencoded': { schema: { type: 'object', properties: { decision: { type: 'string', enum: ['grant', 'decline'], default: 'grant' } } } } },
    };
  }

  // Keep the components the operations reach; name an input-only schema by its id.
  const reach = (from: unknown) => {
    const seen = new Set<string>();
    const todo = [...refsIn(from)];
    while (todo.length) {
      const name = todo.pop()!;
      if (seen.has(name) || !schemas[name]) continue;
      seen.add(name);
      todo.push(...refsIn(schemas[name]));
    }
    return seen;
  };
  const used = reach(paths);
  const names = new Map<string, string>();
  for (const name of used) {
    const base = name.endsWith('Input') ? name.slice(0, -'Input'.length) : null;
    if (base && !used.has(base)) names.set(name, base);
  }
  const kept: Record<string, unknown> = {};
  for (const name of [...used].sort()) kept[names.get(name) ?? name] = renameRefs(schemas[name], names);
  for (const union of ['Command', 'PreviewCommand']) {
    const s = kept[union];
    if (isObject(s) && Array.isArray(s.oneOf)) s.discriminator = { propertyName: 'type' };
  }

  return {
    ...doc,
    paths: renameRefs(paths, names),
    components: {
      ...components,
      schemas: kept,
      headers: {
        RequestId: { description: 'The request id: the caller\'s X-Request-Id when it sent a valid one, else a new one (also `requestId` in error bodies and in the log lines)', schema: { type: 'string' } },
        RetryAfter: { description: 'Seconds until the rate limit lets this token in again', schema: { type: 'integer' } },
        IdempotentReplayed: { description: '`true` when the commandId was already known with the same body: nothing new was accepted', schema: { type: 'string', enum: ['true'] } },
      },
    },
  };
}

/** The `@fastify/swagger` options: the document's frame and the zod transforms. */
export function swaggerOptions(publicUrl: string): SwaggerOptions {
  const transformObject = createJsonSchemaTransformObject({ schemaRegistry: apiRegistry });
  return {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Partner access pipeline',
        version: '2.0.0',
        description: 'Commands are written to a durable command log and applied by workers; reads come from Postgres. '
          + 'Every response carries X-Request-Id; errors are `{"error":{"code","message","requestId",…}}`. See the README for the contract.',
      },
      servers: [{ url: publicUrl, description: 'This service (PUBLIC_URL)' }],
      tags,
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'An API token (API_TOKENS); the scopes an operation needs are listed on it' },
          basic: { type: 'http', scheme: 'basic', description: 'The queue dashboard: any user name, an admin token as the password' },
        },
      },
    },
    transform: createJsonSchemaTransform({ schemaRegistry: apiRegistry, skipList: [] }),
    transformObject: (input) => tidyDocument(transformObject(input) as Json) as ReturnType<typeof transformObject>,
  };
}

